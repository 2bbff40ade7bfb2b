package testenv

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

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
