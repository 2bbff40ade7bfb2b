package dbus

import (
	"strings"
	"testing"

	godbus "github.com/godbus/dbus/v5"
)

const testIfaceXML = `<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
<node>
  <!-- org.edgev2.Test1: a made-up interface. -->
  <interface name="org.edgev2.Test1">
    <method name="Get">
      <arg name="id" type="s" direction="in"/>
      <arg name="options" type="a{sv}" direction="in"/>
      <arg name="obj" type="o" direction="out"/>
      <arg name="n" type="u" direction="out"/>
    </method>
    <method name="Ping"/>
    <method name="Open">
      <annotation name="org.edgev2.ServedOutsideMethodTable" value="true"/>
      <arg name="session" type="h" direction="out"/>
    </method>
    <property name="Name" type="s" access="read"/>
    <signal name="Changed"><arg name="id" type="s"/></signal>
  </interface>
</node>
`

func okGet(godbus.Message, string, map[string]godbus.Variant) (godbus.ObjectPath, uint32, *godbus.Error) {
	return "", 0, nil
}

func TestCheckMethodsRefusesWhatTheXMLDoesNotDeclare(t *testing.T) {
	ping := func(godbus.Message) *godbus.Error { return nil }
	for _, c := range []struct {
		name    string
		methods map[string]any
		want    string // "" = accepted; else a substring of the error
	}{
		{"matching", map[string]any{"Get": okGet, "Ping": ping}, ""},
		{"godbus fills Message and Sender; a Go error result is not an out arg", map[string]any{
			"Get": func(godbus.Sender, string, godbus.Message, map[string]godbus.Variant) (godbus.ObjectPath, uint32, error) {
				return "", 0, nil
			},
			"Ping": func() error { return nil },
		}, ""},
		{"wrong in signature", map[string]any{
			"Get": func(godbus.Message, string, map[string]string) (godbus.ObjectPath, uint32, *godbus.Error) {
				return "", 0, nil
			},
			"Ping": ping,
		}, "Go method org.edgev2.Test1.Get takes (sa{ss}) and returns (ou); dbus/org.edgev2.Test1.xml declares (sa{sv})→(ou)"},
		{"wrong out signature", map[string]any{
			"Get": func(godbus.Message, string, map[string]godbus.Variant) (string, uint32, *godbus.Error) {
				return "", 0, nil
			},
			"Ping": ping,
		}, "returns (su)"},
		{"an out arg missing", map[string]any{
			"Get": func(godbus.Message, string, map[string]godbus.Variant) (godbus.ObjectPath, *godbus.Error) {
				return "", nil
			},
			"Ping": ping,
		}, "returns (o)"},
		{"missing method", map[string]any{"Get": okGet},
			"declares org.edgev2.Test1.Ping but the Go method table lacks it"},
		{"extra method", map[string]any{"Get": okGet, "Ping": ping, "Reset": ping},
			"Go method org.edgev2.Test1.Reset ()→() is not declared in dbus/org.edgev2.Test1.xml"},
		{"method served outside the table is in it", map[string]any{"Get": okGet, "Ping": ping,
			"Open": func() (godbus.UnixFDIndex, *godbus.Error) { return 0, nil }},
			"annotated org.edgev2.ServedOutsideMethodTable"},
		{"not a function", map[string]any{"Get": okGet, "Ping": "ping"}, "Ping is a string, not a function"},
		{"a type with no D-Bus signature", map[string]any{"Get": okGet, "Ping": func(chan int) *godbus.Error { return nil }},
			"Ping has a type with no D-Bus signature"},
	} {
		t.Run(c.name, func(t *testing.T) {
			checkTestInterface(t, Interface{Name: "org.edgev2.Test1", Methods: c.methods}, c.want)
		})
	}
}

// checkTestInterface checks iface against testIfaceXML as export does and
// fails unless the check accepts it (want "") or refuses it with an error
// containing want.
func checkTestInterface(t *testing.T, iface Interface, want string) {
	t.Helper()
	err := checkMethodsXML(iface, []byte(testIfaceXML))
	switch {
	case want == "" && err != nil:
		t.Fatalf("refused: %v", err)
	case want != "" && err == nil:
		t.Fatalf("accepted; want an error containing %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("error %q\nwant it to contain %q", err, want)
	}
}

func TestCheckMethodsNeedsTheShippedInterface(t *testing.T) {
	if err := CheckMethods(Interface{Name: "org.edgev2.NoSuch1"}); err == nil || !strings.Contains(err.Error(), "no shipped file dbus/org.edgev2.NoSuch1.xml") {
		t.Fatalf("interface without a file: %v", err)
	}
	if err := checkMethodsXML(Interface{Name: "org.edgev2.Other1"}, []byte(testIfaceXML)); err == nil || !strings.Contains(err.Error(), `no <interface name="org.edgev2.Other1">`) {
		t.Fatalf("file naming another interface: %v", err)
	}
}

// TestShippedInterfacesParse: every shipped file parses and declares its
// methods once each, with in/out directions only.
func TestShippedInterfacesParse(t *testing.T) {
	files, err := interfaceFiles.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(f.Name(), ".xml")
		b, _ := InterfaceFile(name)
		ms, err := parseInterfaceMethods(name, b)
		if err != nil {
			t.Errorf("%s: %v", name, err)
		} else if len(ms) == 0 {
			t.Errorf("%s declares no methods", name)
		}
	}
}

// TestIntrospectionServesTheShippedInterface: what Introspect answers on
// the root holds the standard interfaces, ObjectManager, the shipped
// interface element with its doc comments, and a node per collection.
func TestIntrospectionServesTheShippedInterface(t *testing.T) {
	root := introspect(ifaceXMLs([]Interface{{Name: "org.edgev2.Keys1"}}), true, []string{"keys"})
	for _, want := range []string{
		`<interface name="org.freedesktop.DBus.Introspectable">`,
		`<interface name="org.freedesktop.DBus.Properties">`,
		`<interface name="org.freedesktop.DBus.ObjectManager">`,
		`<interface name="org.edgev2.Keys1">`,
		`<method name="OpenSession">`,
		`<node name="keys"/>`,
	} {
		if !strings.Contains(root, want) {
			t.Errorf("root introspection lacks %s:\n%s", want, root)
		}
	}
	child := introspect(ifaceXMLs([]Interface{{Name: "org.edgev2.Keys1.Key"}}), false, nil)
	if strings.Contains(child, "ObjectManager") || !strings.Contains(child, "@mechanism") {
		t.Errorf("child introspection: want no ObjectManager and the doc comments:\n%s", child)
	}
}

// TestCheckMethodsSeesWhatAnInterceptorServes: a connection's incoming
// interceptor (keyd's fast path) serves calls from a table of its own,
// which godbus's method table and so the export check never saw: a member
// added there, or retyped, answered calls no introspection announced.
func TestCheckMethodsSeesWhatAnInterceptorServes(t *testing.T) {
	methods := map[string]any{"Get": okGet, "Ping": func() *godbus.Error { return nil }}
	for _, c := range []struct {
		name        string
		intercepted map[string]string
		want        string
	}{
		{"declared, same arguments", map[string]string{"Get": "sa{sv}", "Ping": "", "Open": ""}, ""},
		{"not declared", map[string]string{"Reset": "s"}, "intercepted method org.edgev2.Test1.Reset (s) is not declared in dbus/org.edgev2.Test1.xml"},
		{"other arguments", map[string]string{"Get": "s"}, "intercepted method org.edgev2.Test1.Get takes (s); dbus/org.edgev2.Test1.xml declares (sa{sv})"},
	} {
		t.Run(c.name, func(t *testing.T) {
			checkTestInterface(t, Interface{Name: "org.edgev2.Test1", Methods: methods, Intercepted: c.intercepted}, c.want)
		})
	}
}
