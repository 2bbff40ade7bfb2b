package dbus_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/testenv"
)

const (
	certRoot  = godbus.ObjectPath("/org/edgev2/Certificates1")
	certIface = "org.edgev2.Certificates1.Certificate"
	certName  = "org.edgev2.Certificates1"
)

// adapterService serves certs' Certificate interface with bus.Adapter, from
// a connection of the certs service user that owns certs' bus name (the
// only one the bus policy lets callers send method calls to): Renew fails
// with what renewErr says for the id it resolved.
func adapterService(t *testing.T, b *testenv.Bus, renewErr func(id string) error) (*bus.Server, *testenv.Buffer) {
	t.Helper()
	srv, logs, _ := adapterServiceAuth(t, b, renewErr)
	return srv, logs
}

// adapterServiceAuth is adapterService that also returns its Authorizer.
func adapterServiceAuth(t *testing.T, b *testenv.Bus, renewErr func(id string) error) (*bus.Server, *testenv.Buffer, *bus.Authorizer) {
	t.Helper()
	conn := b.ConnAs(t, testenv.CertsUser)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	logs := &testenv.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	auth, err := bus.NewAuthorizer(ctx, conn, log)
	if err != nil {
		t.Fatal(err)
	}
	srv := bus.NewServer(conn, certRoot, log)
	a := &bus.Adapter{Ctx: ctx, Auth: auth, Server: srv, Log: log, DetailKey: "cert_id"}
	srv.AddCollection(bus.Collection{
		Name: "certificates",
		Interfaces: []bus.Interface{{Name: certIface, Methods: map[string]any{
			"Renew": func(msg godbus.Message) *godbus.Error {
				id, e := a.Child(msg, "org.edgev2.certs.manage")
				if e != nil {
					return e
				}
				if err := renewErr(id); err != nil {
					return a.Fail("Renew", err)
				}
				return nil
			},
		}}},
		Exists: func(id string) bool { return id == "present" || id == "broken" },
		List:   func() ([]string, error) { return []string{"present", "broken"}, nil },
	})
	a.GuardReads("org.edgev2.certs.read")
	if err := srv.Export(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Claim(certName); err != nil {
		t.Fatal(err)
	}
	return srv, logs, auth
}

func TestAdapterAuthorizesBeforeRevealingAChildAndFailsWithTheKind(t *testing.T) {
	testenv.RequireRoot(t)
	b := testenv.StartBus(t)
	pk := testenv.StartPolkit(t, b)
	_, logs := adapterService(t, b, func(id string) error {
		if id == "broken" {
			return errors.New("disk on fire at /var/lib/secret")
		}
		return fault.New(fault.ReadOnly, "certificate %q is managed by configuration", id)
	})
	renew := func(c *godbus.Conn, id string) error {
		return c.Object(certName, bus.ChildPath(certRoot, "certificates", id)).Call(certIface+".Renew", 0).Err
	}
	root := b.Conn(t)
	other := b.ConnAs(t, testenv.OtherUser)

	// Unauthorized: the same refusal for an id that exists and one that does not.
	for _, id := range []string{"present", "absent"} {
		err := bus.FromError(renew(other, id))
		if !fault.Is(err, fault.NotAuthorized) || !strings.Contains(err.Error(), `not authorized for org.edgev2.certs.manage on cert_id "`+id+`"`) {
			t.Fatalf("Renew %s as %s: %v, want NotAuthorized naming cert_id", id, testenv.OtherUser, err)
		}
	}
	// Authorized (root): a missing child is UnknownObject, a domain error its kind.
	if err := bus.FromError(renew(root, "absent")); !fault.Is(err, fault.NotFound) {
		t.Fatalf("Renew of a missing child: %v, want NotFound (UnknownObject)", err)
	}
	var de godbus.Error
	if err := renew(root, "present"); !errors.As(err, &de) || de.Name != bus.ErrReadOnly || !strings.Contains(err.Error(), "managed by configuration") {
		t.Fatalf("Renew failing with fault.ReadOnly: %v, want %s with its message", err, bus.ErrReadOnly)
	}
	// An internal failure: a generic reply; the detail only in the log.
	err := renew(root, "broken")
	if !errors.As(err, &de) || de.Name != bus.ErrFailed || strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("Renew failing internally: %v, want %s without the detail", err, bus.ErrFailed)
	}
	if l := logs.String(); !strings.Contains(l, "Renew failed") || !strings.Contains(l, "disk on fire") || !strings.Contains(l, "level=ERROR") {
		t.Fatalf("the internal failure was not logged as an error:\n%s", l)
	}
	// A grant by cert_id lets the other user act on that id only.
	pk.AddRule(t, "adapter", testenv.GrantRule("org.edgev2.certs.manage", testenv.OtherUser, "cert_id", "present"))
	testenv.Eventually(t, 10*time.Second, func() bool { return !fault.Is(bus.FromError(renew(other, "present")), fault.NotAuthorized) },
		"the rule granting cert_id present took effect")
	if err := bus.FromError(renew(other, "broken")); !fault.Is(err, fault.NotAuthorized) {
		t.Fatalf("the grant on present let %s renew broken: %v", testenv.OtherUser, err)
	}
}

// TestAdapterChildRefusesHostilePathsAlikeForEveryCaller sends a child
// call to paths a caller forges: each gets the same error whoever calls
// (so no reply depends on whether an id exists or on the caller's rights
// except an authorized caller's UnknownObject for a possible id), no path
// reaches another object, and no id that no entity can have reaches polkit
// or its cache.
func TestAdapterChildRefusesHostilePathsAlikeForEveryCaller(t *testing.T) {
	testenv.RequireRoot(t)
	b := testenv.StartBus(t)
	testenv.StartPolkit(t, b)
	_, _, auth := adapterServiceAuth(t, b, func(id string) error {
		return fault.New(fault.ReadOnly, "renewed %q", id)
	})
	root := b.Conn(t)
	other := b.ConnAs(t, testenv.OtherUser)
	const coll = string(certRoot) + "/certificates/"
	huge := strings.Repeat("a", 64<<10)
	tests := []struct {
		name string
		path godbus.ObjectPath
		// root and other are the error names each caller gets.
		root, other string
	}{
		{"empty id", godbus.ObjectPath(coll + "_"), bus.ErrInvalidArgs, bus.ErrInvalidArgs},
		{"id over 255 bytes", godbus.ObjectPath(coll + strings.Repeat("a", 256)), bus.ErrInvalidArgs, bus.ErrInvalidArgs},
		{"64 KiB id", godbus.ObjectPath(coll + huge), bus.ErrInvalidArgs, bus.ErrInvalidArgs},
		{"control character", godbus.ObjectPath(coll + "a_01b"), bus.ErrInvalidArgs, bus.ErrInvalidArgs},
		{"NUL", godbus.ObjectPath(coll + "present_00"), bus.ErrInvalidArgs, bus.ErrInvalidArgs},
		{"not UTF-8", godbus.ObjectPath(coll + "_ff"), bus.ErrInvalidArgs, bus.ErrInvalidArgs},
		{"dot-dot names its own id", godbus.ObjectPath(coll + "_2e_2e_2fpresent"), "org.freedesktop.DBus.Error.UnknownObject", bus.ErrNotAuthorized},
		{"escaped letter is not canonical", godbus.ObjectPath(coll + "_70resent"), "org.freedesktop.DBus.Error.UnknownObject", "org.freedesktop.DBus.Error.UnknownObject"},
		{"upper-case escape", godbus.ObjectPath(coll + "a_2Eb"), "org.freedesktop.DBus.Error.UnknownObject", "org.freedesktop.DBus.Error.UnknownObject"},
		{"below a child", godbus.ObjectPath(coll + "present/x"), "org.freedesktop.DBus.Error.UnknownObject", "org.freedesktop.DBus.Error.UnknownObject"},
		{"unknown collection", godbus.ObjectPath(string(certRoot) + "/keys/present"), "org.freedesktop.DBus.Error.UnknownInterface", "org.freedesktop.DBus.Error.UnknownInterface"},
	}
	// The root is no child: its empty id is not refused.
	var de godbus.Error
	if err := root.Object(certName, certRoot).Call("org.freedesktop.DBus.Properties.GetAll", 0, "org.edgev2.Nothing").Err; !errors.As(err, &de) || de.Name != "org.freedesktop.DBus.Error.UnknownInterface" {
		t.Fatalf("GetAll on the root: %v, want UnknownInterface (the root has no such interface)", err)
	}
	before := auth.CachedDecisions()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !tt.path.IsValid() {
				t.Fatalf("%s is not a valid object path", tt.path)
			}
			for _, c := range []struct {
				who  string
				conn *godbus.Conn
				want string
			}{{"root", root, tt.root}, {testenv.OtherUser, other, tt.other}} {
				err := c.conn.Object(certName, tt.path).Call(certIface+".Renew", 0).Err
				var de godbus.Error
				if !errors.As(err, &de) || de.Name != c.want {
					t.Fatalf("Renew at %.80s as %s: %.300v, want %s", tt.path, c.who, err, c.want)
				}
				if c.want == bus.ErrNotAuthorized && !strings.Contains(err.Error(), `on cert_id "../present"`) {
					t.Fatalf("Renew at %s as %s: %v; want the refusal to name the unescaped id polkit was asked about", tt.path, c.who, err)
				}
				if len(err.Error()) > 1024 {
					t.Fatalf("Renew at %.80s as %s: a %d-byte error echoes the request", tt.path, c.who, len(err.Error()))
				}
			}
		})
	}
	// Only the dot-dot id (a possible id) was put to polkit for the other user.
	if got := auth.CachedDecisions() - before; got != 1 {
		t.Fatalf("the hostile paths left %d cached decisions, want 1 (../present)", got)
	}
}

func TestCallerMapsErrorsToFaultKindsAndWatchesOnlyTheService(t *testing.T) {
	testenv.RequireRoot(t)
	b := testenv.StartBus(t)
	testenv.StartPolkit(t, b)
	conn := b.Conn(t)
	c := bus.Caller{Conn: conn, Dest: certName}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Not running: Unavailable.
	if err := c.Call(ctx, bus.ChildPath(certRoot, "certificates", "present"), certIface+".Renew", nil); !fault.Is(err, fault.Unavailable) {
		t.Fatalf("call to a service that is not running: %v, want Unavailable", err)
	}
	srv, _ := adapterService(t, b, func(id string) error { return fault.New(fault.NotFound, "no %s", id) })
	renewed, err := c.Watch(ctx, certIface, "Renewed")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Call(ctx, bus.ChildPath(certRoot, "certificates", "present"), certIface+".Renew", nil); !fault.Is(err, fault.NotFound) || err.Error() != "no present" {
		t.Fatalf("Renew: %v, want NotFound with the service's message", err)
	}
	if err := c.Call(ctx, bus.ChildPath(certRoot, "certificates", "absent"), certIface+".Renew", nil); !fault.Is(err, fault.NotFound) {
		t.Fatalf("Renew of a missing object: %v, want NotFound", err)
	}
	var ctxDone context.Context
	ctxDone, stop := context.WithCancel(ctx)
	stop()
	if err := c.Call(ctxDone, bus.ChildPath(certRoot, "certificates", "present"), certIface+".Renew", nil); err == nil {
		t.Fatal("a call with an ended context succeeded")
	}
	var props map[string]godbus.Variant
	if err := c.Call(ctx, bus.ChildPath(certRoot, "certificates", "present"), "org.freedesktop.DBus.Properties.GetAll", []any{&props}, certIface); err != nil {
		t.Fatalf("GetAll: %v", err)
	}

	// A forger's Renewed is not delivered; the service's is.
	impostor := b.Conn(t)
	if err := impostor.Emit(bus.ChildPath(certRoot, "certificates", "present"), certIface+".Renewed"); err != nil {
		t.Fatal(err)
	}
	srv.Emit(bus.ChildPath(certRoot, "certificates", "present"), certIface+".Renewed")
	select {
	case s := <-renewed:
		if s.Sender != srv.Conn().Names()[0] {
			t.Fatalf("Watch delivered a Renewed from %s, not the service (%s)", s.Sender, srv.Conn().Names()[0])
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the service's Renewed never arrived")
	}
	cancel()
	testenv.Eventually(t, 5*time.Second, func() bool {
		select {
		case _, ok := <-renewed:
			return !ok
		default:
			return false
		}
	}, "Watch's channel closed after its context ended")
}

// TestCallerWatchFollowsTheOwnerWhateverOrderSignalsArriveIn feeds Watch's
// loop what godbus hands it when its signal channel overflows (a flood of
// signals unicast to the client's connection does that): godbus then
// delivers each further signal from a goroutine of its own, in any order.
// A restart's two NameOwnerChanged arriving swapped must not leave the
// watch believing nobody owns the name (deaf until the next restart), a
// forger must still be refused, and a reader that falls behind must get the
// newest signals (a renewal says "re-read"; the latest one matters), with
// the drop logged.
func TestCallerWatchFollowsTheOwnerWhateverOrderSignalsArriveIn(t *testing.T) {
	testenv.RequireRoot(t)
	b := testenv.StartBus(t)
	claim := func(c *godbus.Conn) {
		if r, err := c.RequestName(certName, godbus.NameFlagDoNotQueue); err != nil || r != godbus.RequestNameReplyPrimaryOwner {
			t.Fatalf("claim %s: %v, %v", certName, r, err)
		}
	}
	first, second := b.ConnAs(t, testenv.CertsUser), b.ConnAs(t, testenv.CertsUser)
	a, bb := first.Names()[0], second.Names()[0]
	claim(first)
	logs := &testenv.Buffer{}
	c := bus.Caller{Conn: b.Conn(t), Dest: certName, Log: slog.New(slog.NewTextHandler(logs, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in := make(chan *godbus.Signal)
	out := make(chan *godbus.Signal, bus.WatchBuffer)
	done := make(chan struct{})
	go func() { defer close(done); bus.Follow(ctx, c, in, out, certIface+".Renewed", a) }()
	defer func() { cancel(); <-done }()
	noc := func(old, new string) *godbus.Signal {
		return &godbus.Signal{Sender: "org.freedesktop.DBus", Name: "org.freedesktop.DBus.NameOwnerChanged", Body: []any{certName, old, new}}
	}
	renewed := func(from string, n uint32) *godbus.Signal {
		return &godbus.Signal{Sender: from, Name: certIface + ".Renewed", Body: []any{n}}
	}
	// expect feeds sigs, then a marker from the owner, and checks what
	// reached out before the marker.
	marker := uint32(1000)
	expect := func(what string, owner string, sigs []*godbus.Signal, want ...uint32) {
		t.Helper()
		for _, s := range sigs {
			in <- s
		}
		marker++
		in <- renewed(owner, marker)
		var got []uint32
		for {
			var s *godbus.Signal
			select {
			case s = <-out:
			case <-time.After(20 * time.Second):
				t.Fatalf("%s: the owner's signal after %v never came", what, got)
			}
			n := s.Body[0].(uint32)
			if n == marker {
				break
			}
			got = append(got, n)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: delivered %v, want %v", what, got, want)
		}
	}
	expect("the owner's signal", a, []*godbus.Signal{renewed(a, 1)}, 1)
	expect("a forger's signal", a, []*godbus.Signal{renewed(bb, 2), renewed(":1.9999", 3)})

	// The service restarts: the name moves from first to second, and the
	// two NameOwnerChanged arrive swapped.
	first.ReleaseName(certName)
	claim(second)
	expect("the new owner's signal after a restart seen out of order", bb,
		[]*godbus.Signal{noc("", bb), noc(a, ""), renewed(bb, 4)}, 4)
	expect("the old owner's signal after the restart", bb, []*godbus.Signal{renewed(a, 5)})
	// A stale hint (the first claim's NameOwnerChanged arriving last) does
	// not let the former owner, still connected, through.
	expect("the former owner's signal after a stale hint", bb, []*godbus.Signal{noc("", a), renewed(a, 6)})

	// A reader that falls behind: the newest WatchBuffer signals wait for it.
	for i := range uint32(bus.WatchBuffer + 10) {
		in <- renewed(bb, 100+i)
	}
	// A barrier: follow takes one signal at a time from the unbuffered in,
	// so once it has taken this one (about another name, ignored) it has
	// finished pushing the last Renewed. Without it the reader below could
	// free a slot before that push and see a signal the push would drop.
	in <- &godbus.Signal{Sender: "org.freedesktop.DBus", Name: "org.freedesktop.DBus.NameOwnerChanged", Body: []any{"org.example.Unrelated", "", ":1.1"}}
	for i := range uint32(bus.WatchBuffer) {
		if s := <-out; s.Body[0].(uint32) != 110+i {
			t.Fatalf("behind by 10: got Renewed %v, want %d (the oldest are dropped, the newest kept)", s.Body[0], 110+i)
		}
	}
	if l := logs.String(); !strings.Contains(l, "dropped") {
		t.Fatalf("dropped signals were not logged:\n%s", l)
	}
}
