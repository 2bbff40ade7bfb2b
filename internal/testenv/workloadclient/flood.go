package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// floodRole plays one side of the abandoned-request flood test:
//
//   - "flooder" asks for server certificates (a certd issuance each, a
//     keyd signature in it) on 64 connections at once for FLOOD_SECONDS,
//     hanging up on each request shortly after sending it, and prints
//     FLOOD-DONE {"sent":..,"start":ms,"end":ms};
//   - "victim" asks for the trust bundle and encrypts, on a new
//     connection each, every 100 ms for ever, printing FLOOD-VICTIM
//     {"n":..,"t":ms,"trust":status,"encrypt":status}.
func floodRole(role, sock, api, mod, gen string) {
	switch role {
	case "flooder":
		secs := 15
		fmt.Sscan(os.Getenv("FLOOD_SECONDS"), &secs)
		exp := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
		body, _ := json.Marshal(map[string]string{"commonName": mod, "expiration": exp})
		req := []byte(fmt.Sprintf("POST /modules/%s/genid/%s/certificate/server?api-version=%s HTTP/1.1\r\nHost: workload\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
			mod, gen, api, len(body), body))
		start := time.Now()
		end := start.Add(time.Duration(secs) * time.Second)
		var sent atomic.Int64
		var wg sync.WaitGroup
		for range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(end) {
					c, err := net.Dial("unix", sock)
					if err != nil {
						continue
					}
					if _, err := c.Write(req); err == nil {
						sent.Add(1)
					}
					// Long enough for modrtd to have made its call.
					time.Sleep(20 * time.Millisecond)
					c.Close()
				}
			}()
		}
		wg.Wait()
		b, _ := json.Marshal(map[string]any{"sent": sent.Load(), "start": start.UnixMilli(), "end": time.Now().UnixMilli()})
		fmt.Println("FLOOD-DONE " + string(b))
	case "victim":
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", sock)
			}}}
		status := func(resp *http.Response, err error) int {
			if err != nil {
				return 0
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		encBody, _ := json.Marshal(map[string]string{"plaintext": base64.StdEncoding.EncodeToString([]byte("reading")),
			"initializationVector": base64.StdEncoding.EncodeToString([]byte("0123456789ab"))})
		for n := 0; ; n++ {
			t := time.Now().UnixMilli()
			trust := status(c.Get("http://workload/trust-bundle?api-version=" + api))
			enc := status(c.Post("http://workload/modules/"+mod+"/genid/"+gen+"/encrypt?api-version="+api, "application/json", bytes.NewReader(encBody)))
			b, _ := json.Marshal(map[string]any{"n": n, "t": t, "trust": trust, "encrypt": enc})
			fmt.Println("FLOOD-VICTIM " + string(b))
			time.Sleep(100 * time.Millisecond)
		}
	}
}
