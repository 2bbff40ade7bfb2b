package dbus

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"

	godbus "github.com/godbus/dbus/v5"
)

// AnnotationOutsideMethodTable marks a method of a shipped interface file
// that the service answers before godbus's method table sees the call (keyd's
// fast path serves Keys1.OpenSession so). Export accepts its absence from the
// Interface's Methods, and refuses its presence there:
//
//	<method name="OpenSession">
//	  <annotation name="org.edgev2.ServedOutsideMethodTable" value="true"/>
//	  ...
const AnnotationOutsideMethodTable = "org.edgev2.ServedOutsideMethodTable"

// xmlMethodSig is one shipped method: its in and out signatures, and whether
// it is served outside the method table.
type xmlMethodSig struct {
	in, out string
	outside bool
}

var (
	messageType = reflect.TypeOf(godbus.Message{})
	senderType  = reflect.TypeOf(godbus.Sender(""))
	dbusErrType = reflect.TypeOf((*godbus.Error)(nil))
	errorType   = reflect.TypeOf((*error)(nil)).Elem()
)

// methodSignature is the D-Bus signature godbus gives a method-table
// function: its arguments other than godbus.Message and godbus.Sender (which
// godbus fills in itself), and its results but a trailing error.
func methodSignature(fn any) (in, out string, err error) {
	t := reflect.TypeOf(fn)
	if t == nil || t.Kind() != reflect.Func {
		return "", "", fmt.Errorf("is a %v, not a function", t)
	}
	defer func() {
		// godbus panics on a Go type with no D-Bus signature.
		if r := recover(); r != nil {
			err = fmt.Errorf("has a type with no D-Bus signature: %v", r)
		}
	}()
	for i := 0; i < t.NumIn(); i++ {
		a := t.In(i)
		if a == messageType || a == senderType {
			continue
		}
		in += godbus.SignatureOfType(a).String()
	}
	n := t.NumOut()
	if n > 0 && (t.Out(n-1) == dbusErrType || t.Out(n-1).Implements(errorType)) {
		n--
	}
	for i := 0; i < n; i++ {
		out += godbus.SignatureOfType(t.Out(i)).String()
	}
	return in, out, nil
}

// CheckMethods compares an interface's Go method table with its shipped
// interface file dbus/<Name>.xml (as methods_gen.go holds it, so that a
// service links no XML parser; TestShippedMethodTableIsTheXMLs keeps the
// two the same): every Go method is declared there with the
// same in and out signatures, and every declared method is in the table
// unless annotated AnnotationOutsideMethodTable; every method an
// interceptor serves (Intercepted) is declared with the same in signature.
// Export calls it for every
// interface, so a method added, renamed or retyped on one side only stops
// the service at start instead of answering with a signature introspection
// does not announce.
func CheckMethods(i Interface) error {
	shipped, ok := shippedMethods[i.Name]
	if !ok {
		return fmt.Errorf("interface %s has no shipped file dbus/%s.xml", i.Name, i.Name)
	}
	return checkMethods(i, shipped)
}

// checkMethods compares i with shipped, the methods its file declares.
func checkMethods(i Interface, shipped map[string]xmlMethodSig) error {
	var errs []error
	names := make([]string, 0, len(i.Methods))
	for n := range i.Methods {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		in, out, err := methodSignature(i.Methods[n])
		if err != nil {
			errs = append(errs, fmt.Errorf("Go method %s.%s %w", i.Name, n, err))
			continue
		}
		want, ok := shipped[n]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("Go method %s.%s (%s)→(%s) is not declared in dbus/%s.xml", i.Name, n, in, out, i.Name))
		case want.outside:
			errs = append(errs, fmt.Errorf("method %s.%s is annotated %s in dbus/%s.xml but is in the method table", i.Name, n, AnnotationOutsideMethodTable, i.Name))
		case in != want.in || out != want.out:
			errs = append(errs, fmt.Errorf("Go method %s.%s takes (%s) and returns (%s); dbus/%s.xml declares (%s)→(%s)",
				i.Name, n, in, out, i.Name, want.in, want.out))
		}
	}
	intercepted := make([]string, 0, len(i.Intercepted))
	for n := range i.Intercepted {
		intercepted = append(intercepted, n)
	}
	sort.Strings(intercepted)
	for _, n := range intercepted {
		in := i.Intercepted[n]
		want, ok := shipped[n]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("intercepted method %s.%s (%s) is not declared in dbus/%s.xml", i.Name, n, in, i.Name))
		case in != want.in:
			errs = append(errs, fmt.Errorf("intercepted method %s.%s takes (%s); dbus/%s.xml declares (%s)", i.Name, n, in, i.Name, want.in))
		}
	}
	declared := make([]string, 0, len(shipped))
	for n := range shipped {
		declared = append(declared, n)
	}
	sort.Strings(declared)
	for _, n := range declared {
		if _, ok := i.Methods[n]; !ok && !shipped[n].outside {
			errs = append(errs, fmt.Errorf("dbus/%s.xml declares %s.%s but the Go method table lacks it (annotate it %s if it is served elsewhere)",
				i.Name, i.Name, n, AnnotationOutsideMethodTable))
		}
	}
	if len(errs) > 0 {
		msgs := make([]string, len(errs))
		for k, e := range errs {
			msgs[k] = e.Error()
		}
		return errors.New("methods do not match the shipped interface: " + strings.Join(msgs, "; "))
	}
	return nil
}
