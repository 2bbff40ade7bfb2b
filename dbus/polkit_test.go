package dbus_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/internal/testenv"
)

// otherUserConnection starts a process as the unprivileged test user that
// holds a bus connection open, and returns its unique name.
func otherUserConnection(t *testing.T, b *testenv.Bus, conn *godbus.Conn) (name string, stop func()) {
	t.Helper()
	uid, gid := testenv.EnsureUser(t, testenv.OtherUser)
	cmd := exec.Command("gdbus", "wait", "--address", b.Address, "--timeout", "600", "org.edgev2.NeverAppears")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
	if err := cmd.Start(); err != nil {
		testenv.Missing(t, "gdbus", err.Error())
	}
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cmd.Process.Kill()
			cmd.Wait()
		}
	}
	t.Cleanup(stop)
	testenv.Eventually(t, 10*time.Second, func() bool {
		var names []string
		conn.BusObject().Call("org.freedesktop.DBus.ListNames", 0).Store(&names)
		for _, n := range names {
			var u uint32
			if n[0] == ':' && conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixUser", 0, n).Store(&u) == nil && u == uint32(uid) {
				name = n
				return true
			}
		}
		return false
	}, "no bus connection of %s appeared", testenv.OtherUser)
	return name, stop
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// authorizerWithPolkit starts a bus with polkitd on it and an Authorizer
// on a root connection to that bus.
func authorizerWithPolkit(t *testing.T) (*testenv.Bus, *godbus.Conn, *bus.Authorizer) {
	t.Helper()
	testenv.RequireRoot(t)
	b := testenv.StartBus(t)
	testenv.StartPolkit(t, b)
	conn := b.Conn(t)
	return b, conn, newAuthorizer(t, conn)
}

// newAuthorizer is an Authorizer on conn that stops when the test ends.
func newAuthorizer(t *testing.T, conn *godbus.Conn) *bus.Authorizer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	auth, err := bus.NewAuthorizer(ctx, conn, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	return auth
}

func TestAuthorizerCachesAndDropsOnPolkitChangedAndCallerExit(t *testing.T) {
	testenv.RequireRoot(t)
	b := testenv.StartBus(t)
	pk := testenv.StartPolkit(t, b)
	conn := b.Conn(t)
	ctx := context.Background()
	auth := newAuthorizer(t, conn)
	sender, stop := otherUserConnection(t, b, conn)
	call := bus.Call{Sender: sender}
	details := map[string]string{"key_id": "cache-key"}

	if e := auth.Authorize(ctx, call, "org.edgev2.keys.use", details); e == nil || e.Name != bus.ErrNotAuthorized {
		t.Fatalf("before any rule: %v, want NotAuthorized", e)
	}
	if e := auth.Authorize(ctx, call, "org.edgev2.keys.use", details); e == nil {
		t.Fatal("cached denial turned into an allow")
	}
	if hits, misses := auth.CacheStats(); hits != 1 || misses != 1 {
		t.Fatalf("cache hits/misses = %d/%d, want 1/1 (second check served from cache)", hits, misses)
	}
	// A forged Changed sent straight to the service (match rules do not
	// filter unicast signals) must not flush the cache.
	forger := b.Conn(t)
	forged := &godbus.Message{Type: godbus.TypeSignal, Headers: map[godbus.HeaderField]godbus.Variant{
		godbus.FieldPath:        godbus.MakeVariant(godbus.ObjectPath("/org/freedesktop/PolicyKit1/Authority")),
		godbus.FieldInterface:   godbus.MakeVariant("org.freedesktop.PolicyKit1.Authority"),
		godbus.FieldMember:      godbus.MakeVariant("Changed"),
		godbus.FieldDestination: godbus.MakeVariant(conn.Names()[0]),
	}}
	seen := bus.ChangedSignalsSeen(auth)
	if call := forger.Send(forged, nil); call.Err != nil {
		t.Fatal(call.Err)
	}
	if err := forger.Emit("/org/freedesktop/PolicyKit1/Authority", "org.freedesktop.PolicyKit1.Authority.Changed"); err != nil {
		t.Fatal(err)
	}
	// The bus delivers one sender's messages in order: once a second
	// forged unicast has been handled, so has the broadcast before it,
	// unless the match rule kept it away.
	if call := forger.Send(forged, nil); call.Err != nil {
		t.Fatal(call.Err)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return bus.ChangedSignalsSeen(auth) >= seen+2 }, "the forged Changed signals handled")
	auth.Authorize(ctx, call, "org.edgev2.keys.use", details)
	if hits, _ := auth.CacheStats(); hits != 2 {
		t.Fatalf("cache hits = %d after forged Changed signals, want 2 (the forgery flushed the cache)", hits)
	}
	// A caller probing many ids cannot grow the cache without bound.
	for i := 0; i < 600; i++ {
		auth.Authorize(ctx, call, "org.edgev2.keys.use", map[string]string{"key_id": fmt.Sprintf("probe-%d", i)})
	}
	if n := auth.CachedDecisions(); n > bus.MaxDecisionsPerSender {
		t.Fatalf("%d cached decisions for one caller; want at most %d", n, bus.MaxDecisionsPerSender)
	}
	// A new rule makes polkit emit Changed; the cached denial must go.
	pk.AddRule(t, "authorizer-cache", `polkit.addRule(function(action, subject) {
  if (action.id == "org.edgev2.keys.use" && subject.user == "`+testenv.OtherUser+`" &&
      action.lookup("key_id") == "cache-key") { return polkit.Result.YES; }
  if (action.id == "org.edgev2.keys.use" && subject.user == "`+testenv.OtherUser+`" &&
      action.lookup("key_id") == "ask") { return polkit.Result.AUTH_ADMIN; }
});`)
	testenv.EventuallyNoError(t, 5*time.Second, func() error {
		if e := auth.Authorize(ctx, call, "org.edgev2.keys.use", details); e != nil {
			return e
		}
		return nil
	}, "after the granting rule (polkit Changed): want allowed")
	// Scoped by details: another key stays denied.
	if e := auth.Authorize(ctx, call, "org.edgev2.keys.use", map[string]string{"key_id": "other"}); e == nil {
		t.Fatal("rule for cache-key allowed another key")
	}
	// A challenge without the allow-interactive flag is InteractiveAuthorizationRequired.
	ask := map[string]string{"key_id": "ask"}
	if e := auth.Authorize(ctx, call, "org.edgev2.keys.use", ask); e == nil || e.Name != bus.ErrInteractiveNeeded {
		t.Fatalf("challenge without interaction: %v, want %s", e, bus.ErrInteractiveNeeded)
	}
	// With it, polkit finds no agent here: a denial, not a hang.
	ictx, icancel := context.WithTimeout(ctx, 30*time.Second)
	defer icancel()
	if e := auth.Authorize(ictx, bus.Call{Sender: sender, Interactive: true}, "org.edgev2.keys.use", ask); e == nil || e.Name != bus.ErrNotAuthorized {
		t.Fatalf("interactive challenge without an agent: %v, want NotAuthorized", e)
	}
	// Root short-circuits without asking polkit.
	if e := auth.Authorize(ctx, bus.Call{Sender: conn.Names()[0]}, "org.edgev2.keys.manage", nil); e != nil {
		t.Fatalf("root: %v", e)
	}
	// The caller leaves the bus: its cached decisions are dropped.
	stop()
	waitFor(t, func() bool { return auth.CachedSenders() == 0 }, "cache entries of a departed sender dropped")
}

func TestAuthorizerDeniesWhenPolkitIsAbsent(t *testing.T) {
	testenv.RequireRoot(t)
	b := testenv.StartBus(t) // no polkitd on this bus
	conn := b.Conn(t)
	ctx := context.Background()
	auth := newAuthorizer(t, conn)
	sender, _ := otherUserConnection(t, b, conn)
	e := auth.Authorize(ctx, bus.Call{Sender: sender}, "org.edgev2.keys.read", nil)
	if e == nil || e.Name != bus.ErrNotAuthorized {
		t.Fatalf("without polkit: %v, want NotAuthorized", e)
	}
	if e := auth.Authorize(ctx, bus.Call{}, "org.edgev2.keys.read", nil); e == nil {
		t.Fatal("a call without sender was allowed")
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, cond, "%s", what)
}

// TestAuthorizerCacheEvictsOneDecisionAtATime: a caller cycling over more
// ids than the cache holds loses only its least recently used decision per
// new id — the recent ones stay cached (no polkit round trip) instead of
// the whole cache being dropped when it fills.
func TestAuthorizerCacheEvictsOneDecisionAtATime(t *testing.T) {
	b, conn, auth := authorizerWithPolkit(t)
	ctx := context.Background()
	const max = 8
	bus.SetMaxDecisionsPerSender(auth, max)
	sender, _ := otherUserConnection(t, b, conn)
	call := bus.Call{Sender: sender}
	use := func(i int) {
		auth.Authorize(ctx, call, "org.edgev2.keys.use", map[string]string{"key_id": fmt.Sprintf("k-%d", i)})
	}
	for i := 0; i < 20; i++ {
		use(i)
		want := i + 1
		if want > max {
			want = max
		}
		if n := auth.CachedDecisions(); n != want {
			t.Fatalf("after %d ids: %d cached decisions, want %d (evict one at a time, never drop all)", i+1, n, want)
		}
	}
	hits, misses := auth.CacheStats()
	for i := 20 - max; i < 20; i++ { // the most recent ids: all cached
		use(i)
	}
	if h, m := auth.CacheStats(); h-hits != max || m != misses {
		t.Fatalf("re-using the %d most recent ids: %d hits, %d misses; want %d hits, 0 misses", max, h-hits, m-misses, max)
	}
	use(0) // long evicted: one polkit round trip, which evicts one entry
	if _, m := auth.CacheStats(); m != misses+1 {
		t.Fatalf("an evicted id was not asked again")
	}
	if n := auth.CachedDecisions(); n != max {
		t.Fatalf("%d cached decisions after a miss on a full cache, want %d", n, max)
	}
	// Recently used survives a new entry; the least recently used goes.
	hits, misses = auth.CacheStats()
	use(19)
	use(13)  // cache: 13..19, 0 with 14 now the least recently used
	use(100) // evicts 14
	use(13)
	use(12)
	if h, m := auth.CacheStats(); h-hits != 3 || m-misses != 2 {
		t.Fatalf("LRU order: %d hits, %d misses; want 3 hits (19, 13, 13) and 2 misses (100; 12, evicted by the miss on 0)", h-hits, m-misses)
	}
}

// TestDenialNamesTheServicesDetailKeyAndStaysSmall: a refusal names the
// entity under the detail key the adapter was given (dbus/ knows no
// service's key), quotes at most a bounded id, and a caller sending huge
// details cannot make the daemon cache them.
func TestDenialNamesTheServicesDetailKeyAndStaysSmall(t *testing.T) {
	b, conn, auth := authorizerWithPolkit(t)
	ctx := context.Background()
	sender, _ := otherUserConnection(t, b, conn)
	call := bus.Call{Sender: sender}
	a := &bus.Adapter{Ctx: ctx, Auth: auth, Log: quietLog(), DetailKey: "widget_id"}
	const action = "org.edgev2.certs.manage"
	for _, tt := range []struct {
		name string
		e    *godbus.Error
		want string
	}{
		{"Authorize", a.Authorize(call, action, "w1"), `not authorized for ` + action + ` on widget_id "w1"`},
		{"AuthorizeDetails", a.AuthorizeDetails(call, action, map[string]string{"widget_id": "w2", "other": "x"}), `not authorized for ` + action + ` on widget_id "w2"`},
		{"service", a.Authorize(call, action, ""), `not authorized for ` + action},
	} {
		if tt.e == nil || tt.e.Name != bus.ErrNotAuthorized || tt.e.Error() != tt.want {
			t.Errorf("%s: %v, want NotAuthorized %q", tt.name, tt.e, tt.want)
		}
	}
	before := auth.CachedDecisions()
	huge := strings.Repeat("h", 64<<10)
	e := a.Authorize(call, action, huge)
	if e == nil || e.Name != bus.ErrNotAuthorized {
		t.Fatalf("a huge id: %.200v, want NotAuthorized", e)
	}
	if len(e.Error()) > 1024 {
		t.Fatalf("the refusal of a huge id is %d bytes: it echoes the id", len(e.Error()))
	}
	if n := auth.CachedDecisions() - before; n != 0 {
		t.Fatalf("a 64 KiB detail was cached (%d new decisions): a caller can grow the daemon's memory 64 KiB a call", n)
	}
}

// TestAuthorizerHonoursPolkitsChangedAfterARestartSeenOutOfOrder: under a
// flood godbus hands signals over in any order; a polkitd restart's two
// NameOwnerChanged swapped must not leave the Authorizer ignoring the real
// polkitd's Changed (revoked rules would stay cached until the TTL), nor
// make it honour a forger's.
func TestAuthorizerHonoursPolkitsChangedAfterARestartSeenOutOfOrder(t *testing.T) {
	_, conn, auth := authorizerWithPolkit(t)
	var pk string
	if err := conn.BusObject().Call("org.freedesktop.DBus.GetNameOwner", 0, "org.freedesktop.PolicyKit1").Store(&pk); err != nil {
		t.Fatal(err)
	}
	noc := func(old, new string) *godbus.Signal {
		return &godbus.Signal{Sender: "org.freedesktop.DBus", Path: "/org/freedesktop/DBus", Name: "org.freedesktop.DBus.NameOwnerChanged",
			Body: []any{"org.freedesktop.PolicyKit1", old, new}}
	}
	changed := func(from string) *godbus.Signal {
		return &godbus.Signal{Sender: from, Path: "/org/freedesktop/PolicyKit1/Authority", Name: "org.freedesktop.PolicyKit1.Authority.Changed"}
	}
	// polkitd "restarted" as itself (pk still owns the name), the pair seen swapped.
	bus.HandleSignal(auth, noc("", pk))
	bus.HandleSignal(auth, noc(":1.9999", ""))
	g := auth.RulesGeneration()
	bus.HandleSignal(auth, changed(":1.4242"))
	if auth.RulesGeneration() != g {
		t.Fatal("a forger's Changed was honoured")
	}
	bus.HandleSignal(auth, changed(pk))
	if auth.RulesGeneration() != g+1 {
		t.Fatal("polkitd's Changed was ignored after its restart was seen out of order: revoked rules stay cached")
	}
}
