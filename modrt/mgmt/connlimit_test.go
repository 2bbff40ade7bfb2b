package mgmt

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/edgev2/edgev2/internal/testenv"
)

// red team s12: edgeAgent (a module) that opens connection after
// connection to the management socket and keeps them open makes modrtd
// hold every one (a socket, a pidfd and a goroutine each, and idle ones
// forever) until its descriptors run out, and with them every module's
// workload socket. modrtd holds a bounded number of connections; further
// ones are closed, and the slots come back when the caller hangs up.
func TestManagementSocketHoldsABoundedNumberOfConnections(t *testing.T) {
	const attempts = 300 // well over what edgeAgent and host tools need
	const bound = 100
	e := newEnv(t, asAgent, false)

	// ask makes one request on c and reports whether it was answered 200.
	ask := func(c net.Conn) bool {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		req, _ := http.NewRequest("GET", "http://mgmt"+v("/systeminfo"), nil)
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
		c, err := net.Dial("unix", e.sock)
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
		t.Fatalf("modrtd served (and held open) %d connections at once, want at most %d", served, bound)
	}
	for _, c := range held {
		c.Close()
	}
	held = nil
	testenv.Eventually(t, 10*time.Second, func() bool {
		c, err := net.Dial("unix", e.sock)
		if err != nil {
			return false
		}
		defer c.Close()
		return ask(c)
	}, "a new connection is served once the caller closed the others")
}
