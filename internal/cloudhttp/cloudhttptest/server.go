// Package cloudhttptest is the fake cloud the DPS, IoT Hub and EST client
// tests talk to: a recording TLS server with canned replies, a SAS signer and
// a sleep recorder. Certificates and keys come from internal/testpki.
package cloudhttptest

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// Request is one request the server received.
type Request struct {
	Method, Path, RawPath, Query string
	Header                       http.Header
	Body                         []byte
	PeerCerts                    []*x509.Certificate
}

// Server is an in-process HTTPS server that records every request before
// handing it, body intact, to its handler.
type Server struct {
	*httptest.Server
	mu  sync.Mutex
	got []Request
}

// NewServer starts h over TLS. tlsCfg may be nil; without certificates the
// server uses httptest's own (see Anchors). ln, when not nil, replaces the
// listener (for a server reached by name). The server stops at cleanup.
func NewServer(t testing.TB, tlsCfg *tls.Config, ln net.Listener, h http.Handler) *Server {
	t.Helper()
	s := &Server{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := record(r)
		s.mu.Lock()
		s.got = append(s.got, req)
		s.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	// Handshake failures are expected in some tests.
	s.Config.ErrorLog = log.New(io.Discard, "", 0)
	if ln != nil {
		s.Listener.Close()
		s.Listener = ln
	}
	if tlsCfg != nil {
		s.TLS = tlsCfg
	}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

// record reads r's body into a Request and leaves r readable again.
func record(r *http.Request) Request {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	req := Request{Method: r.Method, Path: r.URL.Path, RawPath: r.URL.EscapedPath(), Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: body}
	if r.TLS != nil {
		req.PeerCerts = r.TLS.PeerCertificates
	}
	return req
}

// Requests returns what the server has received so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.got...)
}

// Anchors is a pool holding the server's certificate: what a client must
// trust when the server uses httptest's own certificate.
func (s *Server) Anchors() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(s.Certificate())
	return p
}

// Reply is one canned answer. Without a Content-Type header it is sent as
// JSON, as the cloud services answer.
type Reply struct {
	Status int
	Header map[string]string
	Body   string
}

func (rep Reply) write(w http.ResponseWriter) {
	if _, ok := rep.Header["Content-Type"]; !ok {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
	}
	for k, v := range rep.Header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(rep.Status)
	io.WriteString(w, rep.Body)
}

// Replies answers with replies in order; the last one repeats.
func Replies(replies ...Reply) http.Handler {
	var mu sync.Mutex
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		rep := replies[0]
		if len(replies) > 1 {
			replies = replies[1:]
		}
		mu.Unlock()
		rep.write(w)
	})
}

// Answer answers each request with what f says for it.
func Answer(f func(Request) Reply) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f(record(r)).write(w)
	})
}
