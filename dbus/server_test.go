package dbus_test

import (
	"strings"
	"testing"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/internal/testenv"
)

// TestExportRefusesAMethodTableThatDiffersFromTheXML: a service whose Go
// methods do not match its shipped interface does not export anything.
func TestExportRefusesAMethodTableThatDiffersFromTheXML(t *testing.T) {
	testenv.RequireRoot(t)
	b := testenv.StartBus(t)
	conn := b.Conn(t)
	srv := bus.NewServer(conn, "/org/edgev2/Identity1", quietLog())
	srv.Root(bus.Interface{Name: "org.edgev2.Identity1", Methods: map[string]any{
		// GetDeviceIdentity returns a{sv}, not s; the other methods are missing.
		"GetDeviceIdentity": func(godbus.Message) (string, *godbus.Error) { return "", nil },
	}})
	err := srv.Export()
	if err == nil {
		t.Fatal("Export accepted a method table that differs from dbus/org.edgev2.Identity1.xml")
	}
	for _, want := range []string{"GetDeviceIdentity takes () and returns (s); dbus/org.edgev2.Identity1.xml declares ()→(a{sv})",
		"declares org.edgev2.Identity1.GetSasToken but the Go method table lacks it"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Export error %q\nlacks %q", err, want)
		}
	}
	var xml string
	if err := b.Conn(t).Object(conn.Names()[0], "/org/edgev2/Identity1").Call("org.freedesktop.DBus.Introspectable.Introspect", 0).Store(&xml); err == nil && strings.Contains(xml, "org.edgev2.Identity1") {
		t.Errorf("the refused interface was exported anyway:\n%s", xml)
	}
}
