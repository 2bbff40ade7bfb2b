package workload

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
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
		// Expect: 100-continue makes the server say when the handler
		// starts reading the body, that is once the request holds a slot.
		fmt.Fprintf(c, "POST /modules/slow/genid/1/sign?api-version=2019-01-30 HTTP/1.1\r\nHost: workload\r\nContent-Type: application/json\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || !strings.Contains(line, "100 Continue") {
			t.Fatalf("a slow request's handler did not start reading its body: %q %v", line, err)
		}
		fmt.Fprint(c, "{")
	}
	// The module's own next request waits for a slot: it may be answered
	// only after the slow ones hang up...
	c, err := net.Dial("unix", slow)
	if err != nil {
		t.Fatal(err)
	}
	var released atomic.Bool
	answeredAfterRelease := make(chan [2]bool, 1)
	go func() { ok := testenv.Ask(c, url); answeredAfterRelease <- [2]bool{ok, released.Load()} }()
	// ...while another module's is answered.
	if !testenv.AskNew(other, url) {
		t.Fatal("another module's request was not answered while one module held its slots with slow bodies")
	}
	released.Store(true)
	release()
	if r := <-answeredAfterRelease; !r[0] || !r[1] {
		t.Fatalf("the module's own request while slow bodies held its slots: answered %v, after they hung up %v; want answered only after", r[0], r[1])
	}
	c.Close()
}
