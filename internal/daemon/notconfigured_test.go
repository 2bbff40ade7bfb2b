package daemon_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/internal/testenv"
)

// activation lets the private bus activate services from a directory
// (directly: there is no systemd here, as in CI containers), the daemons
// running as root and owning their names as root.
const activation = `<busconfig>
  <servicedir>%s</servicedir>
  <policy user="root">
    <allow own_prefix="org.edgev2"/>
  </policy>
</busconfig>
`

// TestUnconfiguredServiceAnswersNotConfiguredThroughActivation: before
// `edgectl config apply` no /etc/edgev2/*.toml exists. A call to a service
// activates its daemon, which must own its name and answer every call --
// whatever object, interface, method and arguments -- with
// org.edgev2.Error.NotConfigured naming `edgectl config apply`, instead of
// exiting (activation would then wait out its 25 s timeout under systemd).
func TestUnconfiguredServiceAnswersNotConfiguredThroughActivation(t *testing.T) {
	testenv.RequireRoot(t)
	services := []struct{ cmd, name, path string }{
		{"edgev2-keyd", "org.edgev2.Keys1", "/org/edgev2/Keys1"},
		{"edgev2-certd", "org.edgev2.Certificates1", "/org/edgev2/Certificates1"},
		{"edgev2-identityd", "org.edgev2.Identity1", "/org/edgev2/Identity1"},
		{"edgev2-modrtd", "org.edgev2.ModuleRuntime1", "/org/edgev2/ModuleRuntime1"},
	}
	dir := t.TempDir()
	svcDir := filepath.Join(dir, "services")
	if err := os.Mkdir(svcDir, 0o755); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "etc", "not-there.toml")
	for _, s := range services {
		bin := testenv.BuildBinary(t, "./cmd/"+s.cmd)
		act := fmt.Sprintf("[D-BUS Service]\nName=%s\nExec=%s --config %s\n", s.name, bin, missing)
		if err := os.WriteFile(filepath.Join(svcDir, s.name+".service"), []byte(act), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b := testenv.StartBus(t)
	b.AddPolicy(t, "activation", fmt.Sprintf(activation, svcDir))
	conn := b.Conn(t)

	for _, s := range services {
		t.Run(s.cmd, func(t *testing.T) {
			// Every change of owner of the name, from before the first
			// call (which activates the daemon).
			owners := testenv.WatchSignals(t, conn, godbus.WithMatchSender("org.freedesktop.DBus"),
				godbus.WithMatchMember("NameOwnerChanged"), godbus.WithMatchArg(0, s.name))
			calls := []struct {
				what   string
				path   godbus.ObjectPath
				method string
				args   []any
			}{
				{"introspection", godbus.ObjectPath(s.path), "org.freedesktop.DBus.Introspectable.Introspect", nil},
				{"a property", godbus.ObjectPath(s.path), "org.freedesktop.DBus.Properties.GetAll", []any{s.name}},
				{"a method with the wrong arguments", godbus.ObjectPath(s.path), s.name + ".Nonexistent", []any{uint32(7), []byte{0, 1}, map[string]godbus.Variant{"x": godbus.MakeVariant("y")}}},
				{"an object that would not exist", godbus.ObjectPath(s.path + "/a/b/c"), s.name + ".Key.Sign", []any{"../../etc/shadow"}},
			}
			for _, c := range calls {
				var ignored any
				err := conn.Object(s.name, c.path).Call(c.method, 0, c.args...).Store(&ignored)
				var de godbus.Error
				if !asDBusError(err, &de) || de.Name != bus.ErrNotConfigured {
					t.Fatalf("%s: %v, want %s", c.what, err, bus.ErrNotConfigured)
				}
				msg, _ := de.Body[0].(string)
				for _, want := range []string{s.cmd, missing, "edgectl config apply"} {
					if !strings.Contains(msg, want) {
						t.Errorf("%s: message %q does not name %q", c.what, msg, want)
					}
				}
			}
			// The daemon stays (one process owns the name, every call is
			// answered at once by it, nothing is activated again).
			var owner string
			if err := conn.BusObject().Call("org.freedesktop.DBus.GetNameOwner", 0, s.name).Store(&owner); err != nil || owner == "" {
				t.Fatalf("%s has no owner after the calls: %v", s.name, err)
			}
			// The GetNameOwner reply came after every NameOwnerChanged the
			// bus sent before it: exactly one, the activation, to owner.
			var changes []string
			for _, sig := range owners.Pending() {
				if testenv.NameOwnerChanged(s.name)(sig) {
					changes = append(changes, fmt.Sprintf("%q→%q", sig.Body[1], sig.Body[2]))
				}
			}
			if len(changes) != 1 || changes[0] != fmt.Sprintf("%q→%q", "", owner) {
				t.Fatalf("%s changed owner %v during the calls, want once to %s: the not-configured daemon exited", s.name, changes, owner)
			}
		})
	}
}

func asDBusError(err error, de *godbus.Error) bool {
	switch e := err.(type) {
	case godbus.Error:
		*de = e
		return len(e.Body) > 0
	case *godbus.Error:
		*de = *e
		return len(e.Body) > 0
	}
	return false
}
