package workload

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgev2/edgev2/internal/testenv"
)

// red team s12: a module that opens connection after connection to its
// workload socket and keeps them open makes modrtd hold every one (a
// socket, a pidfd and a goroutine each) until its descriptors run out,
// and with them every other module's socket and the management API.
// modrtd holds at most a bounded number of one module's connections; the
// module's further ones are closed, and the slots come back when it
// hangs up.
func TestWorkloadSocketHoldsABoundedNumberOfAModulesConnections(t *testing.T) {
	const attempts = 300 // well over any bound a module needs
	const bound = 100
	dir := t.TempDir()
	m := NewManager(dir, &countingBackend{owns: true}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := m.Listen("sensor"); err != nil {
		t.Fatal(err)
	}
	defer m.Close("sensor")
	sock := filepath.Join(dir, "sensor", "workload.sock")

	// ask makes one request on c and reports whether it was answered 200.
	ask := func(c net.Conn) bool {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		req, _ := http.NewRequest("GET", "http://workload/trust-bundle?api-version=2019-01-30", nil)
		if req.Write(c) != nil {
			return false
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), req)
		if err != nil {
			return false
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	served := 0
	for i := 0; i < attempts; i++ {
		c, err := net.Dial("unix", sock)
		if err != nil {
			break // the kernel's backlog is full: modrtd holds none of these
		}
		held = append(held, c)
		if ask(c) {
			served++
		}
	}
	if served == 0 {
		t.Fatal("no connection was served at all")
	}
	if served > bound {
		t.Fatalf("modrtd served (and held open) %d connections of one module at once, want at most %d", served, bound)
	}
	for _, c := range held {
		c.Close()
	}
	held = nil
	// The module that hung up is served again.
	testenv.Eventually(t, 10*time.Second, func() bool {
		c, err := net.Dial("unix", sock)
		if err != nil {
			return false
		}
		defer c.Close()
		return ask(c)
	}, "a new connection is served once the module closed the others")
}
