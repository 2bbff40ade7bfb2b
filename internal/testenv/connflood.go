package testenv

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// CheckConnectionsBounded is the connection-flood check the management and
// workload sockets share: a caller (who, in the failure message) opens
// attempts connections to sock, makes a GET of url on each and keeps them
// open; the server must answer some, hold at most bound, and answer a new
// connection once the caller has closed the others.
func CheckConnectionsBounded(t *testing.T, sock, url, who string, attempts, bound int) {
	t.Helper()
	served, release := HoldConnections(sock, url, attempts)
	defer release()
	if served == 0 {
		t.Fatal("no connection was served at all")
	}
	if served > bound {
		t.Fatalf("modrtd served (and held open) %d connections of %s at once, want at most %d", served, who, bound)
	}
	release()
	Eventually(t, 10*time.Second, func() bool { return AskNew(sock, url) },
		"a new connection is served once %s closed the others", who)
}

// HoldConnections is a caller that spends a server's connections: it opens
// up to n connections to the unix socket at sock (fewer if the kernel's
// backlog fills), makes one GET of url on each and keeps every one open.
// It returns how many were answered 200 and release, which closes them all
// (and may be called more than once).
func HoldConnections(sock, url string, n int) (served int, release func()) {
	var held []net.Conn
	for range n {
		c, err := net.Dial("unix", sock)
		if err != nil {
			break // the backlog is full: the server holds none of these
		}
		held = append(held, c)
		if Ask(c, url) {
			served++
		}
	}
	var once sync.Once
	return served, func() {
		once.Do(func() {
			for _, c := range held {
				c.Close()
			}
		})
	}
}

// AskNew reports whether a new connection to the unix socket at sock gets
// a GET of url answered 200.
func AskNew(sock, url string) bool {
	c, err := net.Dial("unix", sock)
	if err != nil {
		return false
	}
	defer c.Close()
	return Ask(c, url)
}

// Ask makes one GET of url on c (keeping c open) and reports whether it
// was answered 200 within 10 s.
func Ask(c net.Conn, url string) bool {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req, err := http.NewRequest("GET", url, nil)
	if err != nil || req.Write(c) != nil {
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

// RoundTrip makes one request on c (keeping c open) and returns the
// status and body; a request that cannot be written or answered fails t.
func RoundTrip(t *testing.T, c net.Conn, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := req.Write(c); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
