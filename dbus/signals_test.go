package dbus_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/internal/testenv"
)

// TestSignalsToAPeerDoNotWaitForAnotherPeersDecision: one peer whose
// authorization hangs (polkitd slow under load, a check that times out)
// neither holds back the signals of the peers already decided, nor later
// signals to them, and still gets its own in order once decided. (The
// keys/adapter ManageKeys flake: the watcher, root, waited behind polkit
// round trips for another peer, one new key id after another.)
func TestSignalsToAPeerDoNotWaitForAnotherPeersDecision(t *testing.T) {
	testenv.RequireRoot(t)
	b := testenv.StartBus(t)
	srv := bus.NewServer(b.Conn(t), "/org/edgev2/Bench", quietLog())
	listen := func() (*godbus.Conn, chan *godbus.Signal) {
		c := b.Conn(t)
		ch := make(chan *godbus.Signal, 16)
		c.Signal(ch)
		return c, ch
	}
	fast, fastSigs := listen()
	slow, slowSigs := listen()
	release := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	t.Cleanup(open)
	srv.CanReceive = func(peer, id string) bool {
		if peer == slow.Names()[0] {
			<-release // a decision that takes as long as the test wants
		}
		return peer == fast.Names()[0] || peer == slow.Names()[0]
	}
	next := func(ch chan *godbus.Signal, who string) uint32 {
		t.Helper()
		for {
			select {
			case s := <-ch:
				if s.Name == "org.edgev2.Bench.Tick" {
					return s.Body[0].(uint32)
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("%s: no signal while another peer's decision was pending", who)
			}
		}
	}
	for i := range uint32(2) {
		srv.Emit("/org/edgev2/Bench", "org.edgev2.Bench.Tick", i)
		if got := next(fastSigs, "decided peer"); got != i {
			t.Fatalf("decided peer got Tick %d, want %d", got, i)
		}
	}
	open()
	for i := range uint32(2) {
		if got := next(slowSigs, "slow peer"); got != i {
			t.Fatalf("slow peer got Tick %d, want %d (its signals in order)", got, i)
		}
	}
}

// BenchmarkSignalFanOut measures what unicast-to-authorised-peers costs
// against the broadcast it replaces, on a bus with 20 idle root peers and
// 5 idle peers of a uid polkit refuses (a gateway's bus has a few dozen
// peers). It reports unicast/broadcast, the time per signal until one root
// listener has it.
func BenchmarkSignalFanOut(b *testing.B) {
	testenv.RequireRoot(b)
	bb := testenv.StartBus(b)
	testenv.StartPolkit(b, bb)
	for range 20 {
		bb.Conn(b)
	}
	for range 5 {
		bb.ConnAs(b, testenv.OtherUser)
	}
	conn := bb.Conn(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	auth, err := bus.NewAuthorizer(ctx, conn, quietLog())
	if err != nil {
		b.Fatal(err)
	}
	listener := bb.Conn(b)
	sigs := make(chan *godbus.Signal, 4096)
	listener.Signal(sigs)
	if err := listener.BusObject().Call("org.freedesktop.DBus.AddMatch", 0, "type='signal',interface='org.edgev2.Bench'").Err; err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, srv *bus.Server) time.Duration {
		start := time.Now()
		// At most 256 in flight, well under the server's queue.
		for sent, got := 0, 0; got < b.N; {
			if sent < b.N && sent-got < 256 {
				srv.Emit("/org/edgev2/Bench", "org.edgev2.Bench.Tick", uint32(sent))
				sent++
				continue
			}
			select {
			case s := <-sigs:
				if s.Name == "org.edgev2.Bench.Tick" {
					got++
				}
			case <-time.After(30 * time.Second):
				b.Fatalf("%d of %d signals arrived", got, b.N)
			}
		}
		return time.Since(start) / time.Duration(b.N)
	}
	broadcast := bus.NewServer(conn, "/org/edgev2/Bench", quietLog())
	unicast := bus.NewServer(conn, "/org/edgev2/Bench", quietLog())
	unicast.CanReceive = func(peer, id string) bool {
		return bus.MayReceive(ctx, auth, peer, "org.edgev2.modules.read", map[string]string{"module_id": "m"})
	}
	var perBroadcast, perUnicast time.Duration
	b.Run("broadcast", func(b *testing.B) { perBroadcast = run(b, broadcast) })
	b.Run("unicast", func(b *testing.B) { perUnicast = run(b, unicast) })
	if perBroadcast > 0 {
		b.Logf("per signal: broadcast %v, unicast to authorised peers %v (%.1fx); polkit cache hits/misses %s",
			perBroadcast, perUnicast, float64(perUnicast)/float64(perBroadcast), stats(auth))
	}
}

func stats(a *bus.Authorizer) string {
	h, m := a.CacheStats()
	return fmt.Sprintf("%d/%d", h, m)
}
