package workload

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgev2/edgev2/internal/testenv"
)

// A module that sends request bodies a byte at a time, or never finishes
// them, holds its own call slots (MaxCalls) for as long as it likes: the
// server has no body read timeout. That is the module starving itself
// only: every module has a socket, a server and slots of its own, and a
// body being read holds no call to keyd, certd or identityd, so another
// module's requests are answered at once; the module gets its slots back
// when it hangs up.
func TestSlowRequestBodiesHoldOnlyTheirOwnModulesCalls(t *testing.T) {
	dir := t.TempDir()
	m := NewManager(dir, &countingBackend{owns: true}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for _, mod := range []string{"slow", "other"} {
		if err := m.Listen(mod); err != nil {
			t.Fatal(err)
		}
		defer m.Close(mod)
	}
	slow, other := filepath.Join(dir, "slow", "workload.sock"), filepath.Join(dir, "other", "workload.sock")
	const url = "http://workload/trust-bundle?api-version=2019-01-30"

	var held []net.Conn
	release := func() {
		for _, c := range held {
			c.Close()
		}
		held = nil
	}
	defer release()
	for range MaxCalls {
		c, err := net.Dial("unix", slow)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		fmt.Fprintf(c, "POST /modules/slow/genid/1/sign?api-version=2019-01-30 HTTP/1.1\r\nHost: workload\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
	}
	time.Sleep(300 * time.Millisecond) // each is in its handler, reading
	// The module's own next request waits for a slot...
	c, err := net.Dial("unix", slow)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan bool, 1)
	go func() { done <- testenv.Ask(c, url) }()
	select {
	case ok := <-done:
		t.Fatalf("the module's own request was answered (%v) while slow bodies held its slots", ok)
	case <-time.After(2 * time.Second):
	}
	// ...another module's does not.
	start := time.Now()
	if !testenv.AskNew(other, url) || time.Since(start) > 2*time.Second {
		t.Fatalf("another module's request while one module held its slots with slow bodies: took %v or failed", time.Since(start))
	}
	release()
	if ok := <-done; !ok {
		t.Fatal("the module's request waiting for a slot was not answered once it hung up the slow ones")
	}
	c.Close()
}
