// Package dbus is the bus plumbing every edgev2 service shares: interface XML,
// the object registry, errors, path escaping and the polkit client.
package dbus

import (
	"embed"
	"fmt"
	"strings"
)

//go:embed org.edgev2.*.xml
var interfaceFiles embed.FS

// InterfaceXML returns the <interface> element (with its doc comments) of a
// shipped interface file dbus/<name>.xml.
func InterfaceXML(name string) (string, error) {
	b, err := interfaceFiles.ReadFile(name + ".xml")
	if err != nil {
		return "", fmt.Errorf("no interface file for %s: %w", name, err)
	}
	if e, ok := interfaceElement(string(b), name); ok {
		return e, nil
	}
	return "", fmt.Errorf("interface file %s.xml has no <interface name=%q>", name, name)
}

// interfaceElement is what a shipped file holds inside <node>: one
// interface element, named name, preceded by its doc comment. (By string
// search: a regexp here linked the regexp engine into every service.)
func interfaceElement(doc, name string) (string, bool) {
	const ws = " \t\n\f\r"
	_, rest, ok := strings.Cut(doc, "<node>")
	if !ok {
		return "", false
	}
	rest = strings.TrimLeft(rest, ws)
	const open = `<interface name="`
	i := strings.Index(rest, open)
	if i < 0 {
		return "", false
	}
	n, _, ok := strings.Cut(rest[i+len(open):], `"`)
	if !ok || n != name || !strings.HasPrefix(rest[i+len(open)+len(n):], `">`) {
		return "", false
	}
	const closing = "</interface>"
	// The element ends at the first </interface> followed by </node>.
	for from := i; ; {
		j := strings.Index(rest[from:], closing)
		if j < 0 {
			return "", false
		}
		end := from + j + len(closing)
		if strings.HasPrefix(strings.TrimLeft(rest[end:], ws), "</node>") {
			return rest[:end], true
		}
		from = end
	}
}

// InterfaceFile returns the whole shipped file for an interface.
func InterfaceFile(name string) ([]byte, error) {
	return interfaceFiles.ReadFile(name + ".xml")
}

// MustInterfaceXML is InterfaceXML for interfaces compiled into a service.
func MustInterfaceXML(name string) string {
	s, err := InterfaceXML(name)
	if err != nil {
		panic(err)
	}
	return s
}

const introspectHeader = `<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
`

// Standard interfaces every object implements.
const standardXML = `  <interface name="org.freedesktop.DBus.Introspectable">
    <method name="Introspect">
      <arg name="xml_data" type="s" direction="out"/>
    </method>
  </interface>
  <interface name="org.freedesktop.DBus.Peer">
    <method name="Ping"/>
    <method name="GetMachineId">
      <arg name="machine_uuid" type="s" direction="out"/>
    </method>
  </interface>
  <interface name="org.freedesktop.DBus.Properties">
    <method name="Get">
      <arg name="interface_name" type="s" direction="in"/>
      <arg name="property_name" type="s" direction="in"/>
      <arg name="value" type="v" direction="out"/>
    </method>
    <method name="GetAll">
      <arg name="interface_name" type="s" direction="in"/>
      <arg name="props" type="a{sv}" direction="out"/>
    </method>
    <method name="Set">
      <arg name="interface_name" type="s" direction="in"/>
      <arg name="property_name" type="s" direction="in"/>
      <arg name="value" type="v" direction="in"/>
    </method>
    <signal name="PropertiesChanged">
      <arg name="interface_name" type="s"/>
      <arg name="changed_properties" type="a{sv}"/>
      <arg name="invalidated_properties" type="as"/>
    </signal>
  </interface>
`

const objectManagerXML = `  <interface name="org.freedesktop.DBus.ObjectManager">
    <method name="GetManagedObjects">
      <arg name="objects" type="a{oa{sa{sv}}}" direction="out"/>
    </method>
    <signal name="InterfacesAdded">
      <arg name="object" type="o"/>
      <arg name="interfaces" type="a{sa{sv}}"/>
    </signal>
    <signal name="InterfacesRemoved">
      <arg name="object" type="o"/>
      <arg name="interfaces" type="as"/>
    </signal>
  </interface>
`

// introspectNode renders a bare node that only holds children (it has no
// properties of its own).
func introspectNode(children []string) string {
	var b strings.Builder
	b.WriteString(introspectHeader)
	b.WriteString("<node>\n")
	b.WriteString(standardXML[:strings.Index(standardXML, `  <interface name="org.freedesktop.DBus.Properties">`)])
	for _, c := range children {
		fmt.Fprintf(&b, "  <node name=%q/>\n", c)
	}
	b.WriteString("</node>\n")
	return b.String()
}

// introspect renders a node with the given interface elements and child nodes.
func introspect(ifaceXML []string, objectManager bool, children []string) string {
	var b strings.Builder
	b.WriteString(introspectHeader)
	b.WriteString("<node>\n")
	b.WriteString(standardXML)
	if objectManager {
		b.WriteString(objectManagerXML)
	}
	for _, x := range ifaceXML {
		b.WriteString("  ")
		b.WriteString(strings.TrimSpace(x))
		b.WriteString("\n")
	}
	for _, c := range children {
		fmt.Fprintf(&b, "  <node name=%q/>\n", c)
	}
	b.WriteString("</node>\n")
	return b.String()
}
