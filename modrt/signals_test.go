package modrt_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/internal/testenv"
	rtapi "github.com/edgev2/edgev2/modrt/api"
)

// listener is a bus connection that takes every signal it is sent.
type listener struct {
	name string
	conn *godbus.Conn
	sigs chan *godbus.Signal
	seen []*godbus.Signal // from modrtd, in order of arrival
	from string           // modrtd's unique name
}

func listen(t *testing.T, conn *godbus.Conn, from string, rules ...string) *listener {
	t.Helper()
	l := &listener{name: conn.Names()[0], conn: conn, sigs: make(chan *godbus.Signal, 4096), from: from}
	conn.Signal(l.sigs)
	for _, r := range rules {
		err := conn.BusObject().Call("org.freedesktop.DBus.AddMatch", 0, r).Err
		var de godbus.Error
		switch {
		case strings.Contains(r, "eavesdrop='true'"):
			// The system bus lets nobody eavesdrop (root monitors instead).
			if !errorsAs(err, &de) || de.Name != "org.freedesktop.DBus.Error.AccessDenied" {
				t.Fatalf("AddMatch %q as %s: %v, want AccessDenied", r, l.name, err)
			}
		case err != nil:
			t.Fatalf("AddMatch %q as %s: %v", r, l.name, err)
		}
	}
	return l
}

// until collects signals from modrtd until one satisfies want, and fails
// after 30 s: what arrived before it is in l.seen.
func (l *listener) until(t *testing.T, what string, want func(*godbus.Signal) bool) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case s := <-l.sigs:
			if s.Sender != l.from {
				continue // the bus driver's NameAcquired and the like
			}
			l.seen = append(l.seen, s)
			if want(s) {
				return
			}
		case <-timeout:
			t.Fatalf("%s: no %s within 30 s; got %s", l.name, what, describe(l.seen))
		}
	}
}

// about is the module a signal reveals: its path, or the path it carries
// (InterfacesAdded/Removed), or "<runtime>" for PullProgress.
func about(s *godbus.Signal) string {
	p := s.Path
	if s.Path == rtapi.ObjectPath && len(s.Body) > 0 {
		if op, ok := s.Body[0].(godbus.ObjectPath); ok {
			p = op
		} else {
			return "<runtime>"
		}
	}
	elem, ok := strings.CutPrefix(string(p), string(rtapi.ObjectPath)+"/modules/")
	if !ok {
		return string(p)
	}
	name, _ := bus.UnescapePathElement(elem)
	return name
}

func member(s *godbus.Signal) string { return s.Name[strings.LastIndex(s.Name, ".")+1:] }

func describe(sigs []*godbus.Signal) string {
	var b strings.Builder
	for _, s := range sigs {
		fmt.Fprintf(&b, "\n  %s about %s %v", member(s), about(s), s.Body)
	}
	return b.String()
}

func isSignal(mem, module string, body0 ...any) func(*godbus.Signal) bool {
	return func(s *godbus.Signal) bool {
		if member(s) != mem || about(s) != module {
			return false
		}
		return len(body0) == 0 || (len(s.Body) > 0 && s.Body[0] == body0[0])
	}
}

// leaked returns the signals about modules other than those allowed.
func leaked(sigs []*godbus.Signal, allowed ...string) []*godbus.Signal {
	var out []*godbus.Signal
	for _, s := range sigs {
		ok := false
		for _, a := range allowed {
			ok = ok || about(s) == a
		}
		if !ok {
			out = append(out, s)
		}
	}
	return out
}

// TestModuleEventsReachOnlyReaders: a second uid listening with the
// broadest match rules (eavesdrop included) learns nothing of modules it
// may not read, neither from signals nor from Introspect; polkit granting it
// one module lets exactly that module's events through, until the grant is
// withdrawn; root hears everything.
func TestModuleEventsReachOnlyReaders(t *testing.T) {
	testenv.RequireRoot(t)
	reg := testenv.StartRegistry(t, "edge", "s3cret-registry")
	m := onDevice(testenv.StartDevice(t, testenv.DeviceOptions{Modrtd: &testenv.Daemon{Config: fmt.Sprintf("registry_ca_files = [%q]\n", reg.CAFile)}}))
	pk := m.Polkit
	const image = "edgev2.test/busybox:1"
	m.ImportImage(t, testenv.BuildImage(t, image, testenv.ImageConfig{Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"sleep 600"}}))
	pulled := testenv.BuildImage(t, "edgev2.test/pulled:1", testenv.ImageConfig{Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"true"}})
	testenv.ImportImage(t, m.ctr, "registry-src", pulled)
	remote := reg.Push(t, m.ctr, "registry-src", "edgev2.test/pulled:1")

	// The tester may read the marker modules, which tell a listener that
	// every signal modrtd sent before them has arrived.
	pk.AddRule(t, "modules-markers", `polkit.addRule(function(action, subject) {
    if (action.id == "org.edgev2.modules.read" && subject.user == "edgev2-tester" &&
        action.lookup("module_id").indexOf("marker-") == 0) return polkit.Result.YES;
});`)

	var owner string
	if err := m.conn.BusObject().Call("org.freedesktop.DBus.GetNameOwner", 0, rtapi.BusName).Store(&owner); err != nil {
		t.Fatal(err)
	}
	root := listen(t, m.bus.Conn(t), owner, "type='signal'")
	other := listen(t, m.bus.ConnAs(t, testenv.OtherUser), owner,
		"type='signal'", "type='signal',sender='"+rtapi.BusName+"'", "type='signal',eavesdrop='true'", "eavesdrop='true'")

	t.Run("MonitoringIsRefusedToTheSecondUID", func(t *testing.T) {
		mon := m.bus.ConnAs(t, testenv.OtherUser)
		err := mon.BusObject().Call("org.freedesktop.DBus.Monitoring.BecomeMonitor", 0, []string{}, uint32(0)).Err
		var de godbus.Error
		if !errorsAs(err, &de) || de.Name != "org.freedesktop.DBus.Error.AccessDenied" {
			t.Fatalf("BecomeMonitor as %s: %v, want AccessDenied", testenv.OtherUser, err)
		}
	})

	// Created, started, stopped, started again, an image pulled: root
	// hears each; the tester, then told of marker-1, heard none of it.
	if err := m.CreateModule("hidden", spec("hidden", image, "never", "sleep 600")); err != nil {
		t.Fatal(err)
	}
	root.until(t, "hidden running", isSignal("StateChanged", "hidden", "running"))
	if err := m.Module("hidden").Call(rtapi.ModuleInterface+".Stop", 0, uint32(1)).Err; err != nil {
		t.Fatal(err)
	}
	root.until(t, "hidden stopped", isSignal("StateChanged", "hidden", "stopped"))
	if err := m.Module("hidden").Call(rtapi.ModuleInterface+".Start", 0).Err; err != nil {
		t.Fatal(err)
	}
	root.until(t, "hidden running again", isSignal("StateChanged", "hidden", "running"))
	var digest string
	if err := m.Runtime().Call(rtapi.Interface+".PullImage", 0, remote, map[string]godbus.Variant{
		"username": godbus.MakeVariant("edge"), "password": godbus.MakeVariant("s3cret-registry")}).Store(&digest); err != nil {
		t.Fatalf("PullImage: %v", err)
	}
	root.until(t, "PullProgress", isSignal("PullProgress", "<runtime>"))
	for _, want := range []string{"InterfacesAdded", "PropertiesChanged", "StateChanged"} {
		found := false
		for _, s := range root.seen {
			found = found || (member(s) == want && about(s) == "hidden")
		}
		if !found {
			t.Errorf("root got no %s about hidden; got %s", want, describe(root.seen))
		}
	}
	if err := m.CreateModule("marker-1", spec("marker-1", image, "never", "sleep 600")); err != nil {
		t.Fatal(err)
	}
	other.until(t, "the marker-1 module", isSignal("InterfacesAdded", "marker-1"))
	if l := leaked(other.seen, "marker-1"); len(l) > 0 {
		t.Fatalf("%s, denied modules.read, got %s", testenv.OtherUser, describe(l))
	}

	t.Run("IntrospectAndPropertiesTellNothingOfExistence", func(t *testing.T) {
		for _, iface := range []string{"org.freedesktop.DBus.Introspectable.Introspect", "org.freedesktop.DBus.Properties.GetAll"} {
			var args []any
			if strings.HasSuffix(iface, "GetAll") {
				args = []any{rtapi.ModuleInterface}
			}
			answer := func(conn *godbus.Conn, name string) string {
				err := conn.Object(rtapi.BusName, bus.ChildPath(rtapi.ObjectPath, "modules", name)).Call(iface, 0, args...).Err
				var de godbus.Error
				if !errorsAs(err, &de) {
					return fmt.Sprintf("success (%v)", err)
				}
				return de.Name + ": " + strings.ReplaceAll(fmt.Sprint(de.Body...), name, "NAME")
			}
			existing, missing := answer(other.conn, "hidden"), answer(other.conn, "nothere")
			if existing != missing || !strings.HasPrefix(existing, bus.ErrNotAuthorized) {
				t.Errorf("%s as %s: existing module %q, missing one %q; want the same NotAuthorized", iface, testenv.OtherUser, existing, missing)
			}
			if got := answer(m.conn, "hidden"); !strings.HasPrefix(got, "success") {
				t.Errorf("%s as root on an existing module: %s", iface, got)
			}
		}
	})

	var status godbus.Variant
	t.Run("AGrantLetsThatModulesEventsThrough", func(t *testing.T) {
		pk.AddRule(t, "modules-visible", `polkit.addRule(function(action, subject) {
    if (action.id == "org.edgev2.modules.read" && subject.user == "edgev2-tester" &&
        action.lookup("module_id") == "visible") return polkit.Result.YES;
});`)
		other.seen = nil
		if err := m.CreateModule("visible", spec("visible", image, "never", "sleep 600")); err != nil {
			t.Fatal(err)
		}
		root.until(t, "visible running", isSignal("StateChanged", "visible", "running"))
		if err := m.Module("hidden").Call(rtapi.ModuleInterface+".Stop", 0, uint32(1)).Err; err != nil {
			t.Fatal(err)
		}
		root.until(t, "hidden stopped", isSignal("StateChanged", "hidden", "stopped"))
		if err := m.CreateModule("marker-2", spec("marker-2", image, "never", "sleep 600")); err != nil {
			t.Fatal(err)
		}
		other.until(t, "the marker-2 module", isSignal("InterfacesAdded", "marker-2"))
		for _, want := range []func(*godbus.Signal) bool{
			isSignal("InterfacesAdded", "visible"), isSignal("PropertiesChanged", "visible"), isSignal("StateChanged", "visible", "running"),
		} {
			found := false
			for _, s := range other.seen {
				found = found || want(s)
			}
			if !found {
				t.Errorf("%s, granted module visible, did not get all its events; got %s", testenv.OtherUser, describe(other.seen))
				break
			}
		}
		if l := leaked(other.seen, "visible", "marker-1", "marker-2"); len(l) > 0 {
			t.Fatalf("%s, granted only module visible, got %s", testenv.OtherUser, describe(l))
		}
		// A read the cache remembers: its refusal later shows modrtd
		// dropped its decisions on polkit's Changed.
		if err := other.conn.Object(rtapi.BusName, bus.ChildPath(rtapi.ObjectPath, "modules", "visible")).
			Call("org.freedesktop.DBus.Properties.Get", 0, rtapi.ModuleInterface, "Status").Store(&status); err != nil {
			t.Fatalf("Status of visible as %s with the grant: %v", testenv.OtherUser, err)
		}
	})

	t.Run("WithdrawingTheGrantStopsThem", func(t *testing.T) {
		var err error
		if !testenv.WaitFor(15*time.Second, func() bool {
			err = other.conn.Object(rtapi.BusName, bus.ChildPath(rtapi.ObjectPath, "modules", "visible")).
				Call("org.freedesktop.DBus.Properties.Get", 0, rtapi.ModuleInterface, "Status").Store(&status)
			var de godbus.Error
			return errorsAs(err, &de) && de.Name == bus.ErrNotAuthorized
		}) {
			t.Fatalf("Status of visible after the grant was withdrawn: %v, want NotAuthorized", err)
		}
		other.seen = nil
		if err := m.Module("visible").Call(rtapi.ModuleInterface+".Stop", 0, uint32(1)).Err; err != nil {
			t.Fatal(err)
		}
		root.until(t, "visible stopped", isSignal("StateChanged", "visible", "stopped"))
		for _, name := range []string{"visible", "hidden"} {
			if err := m.Module(name).Call(rtapi.ModuleInterface+".Remove", 0).Err; err != nil {
				t.Fatal(err)
			}
			root.until(t, name+" removed", isSignal("InterfacesRemoved", name))
		}
		if err := m.CreateModule("marker-3", spec("marker-3", image, "never", "sleep 600")); err != nil {
			t.Fatal(err)
		}
		other.until(t, "the marker-3 module", isSignal("InterfacesAdded", "marker-3"))
		if l := leaked(other.seen, "marker-1", "marker-2", "marker-3"); len(l) > 0 {
			t.Fatalf("%s, after its grant was withdrawn, got %s", testenv.OtherUser, describe(l))
		}
	})

	t.Run("APullsCallerGetsItsProgress", func(t *testing.T) {
		// Allowed to pull but not to read the runtime: the progress of its
		// own pull is still its to see.
		pk.AddRule(t, "modules-pull", `polkit.addRule(function(action, subject) {
    if (action.id == "org.edgev2.modules.manage" && subject.user == "edgev2-tester" &&
        action.lookup("module_id") == undefined) return polkit.Result.YES;
});`)
		other.seen = nil
		if err := other.conn.Object(rtapi.BusName, rtapi.ObjectPath).Call(rtapi.Interface+".PullImage", 0, remote, map[string]godbus.Variant{
			"username": godbus.MakeVariant("edge"), "password": godbus.MakeVariant("s3cret-registry")}).Store(&digest); err != nil {
			t.Fatalf("PullImage as %s with modules.manage: %v", testenv.OtherUser, err)
		}
		other.until(t, "the progress of its pull", isSignal("PullProgress", "<runtime>"))
	})
}
