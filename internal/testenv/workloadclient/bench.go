package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// benchSign is the load mode of make bench: clients clients, each on its
// own kept-alive connection, sign as fast as they can for d and the rate
// of answers 200 with a digest is returned. Each client writes the same
// HTTP/1.1 request and reads the response on its own goroutine, as a
// lean SDK would (net/http's client hands every request and response to
// two goroutines of its own, which this would measure instead of modrtd).
func benchSign(sock, api, mod, gen string, clients int, d time.Duration) (float64, error) {
	body, _ := json.Marshal(map[string]string{"keyId": "primary", "algo": "HMACSHA256", "data": base64.StdEncoding.EncodeToString([]byte("bench"))})
	req := []byte(fmt.Sprintf("POST /modules/%s/genid/%s/sign?api-version=%s HTTP/1.1\r\nHost: workload\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		mod, gen, api, len(body), body))
	var n atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := benchClient(sock, req, start.Add(d), &n); err != nil {
				firstErr.CompareAndSwap(nil, err)
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, err
	}
	return float64(n.Load()) / time.Since(start).Seconds(), nil
}

// benchClient signs on one connection until deadline, counting good
// answers in n; a connection the server closed is dialled again.
func benchClient(sock string, req []byte, deadline time.Time, n *atomic.Int64) error {
	var conn net.Conn
	var br *bufio.Reader
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	var out struct{ Digest string }
	for time.Now().Before(deadline) {
		if conn == nil {
			c, err := net.Dial("unix", sock)
			if err != nil {
				return err
			}
			conn, br = c, bufio.NewReader(c)
		}
		if _, err := conn.Write(req); err != nil {
			conn.Close()
			conn = nil
			continue
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			conn.Close()
			conn = nil
			continue
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.Close {
			conn.Close()
			conn = nil
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("sign answered %d: %s", resp.StatusCode, data)
		}
		out.Digest = ""
		if json.Unmarshal(data, &out) != nil || out.Digest == "" {
			return fmt.Errorf("sign answered 200 without a digest: %s", data)
		}
		n.Add(1)
	}
	return nil
}
