package est

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/edgev2/edgev2/internal/testpki"
)

// lab is one in-process EST server plus what tests need to talk to it.
type lab struct {
	url   string // https://127.0.0.1:PORT
	caPEM []byte
	srv   *Server
	pool  *x509.CertPool
}

func startLab(t *testing.T, cfg Config) *lab {
	t.Helper()
	url, caPEM, srv := StartTestServer(t, cfg)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("CA PEM does not parse")
	}
	return &lab{url: url, caPEM: caPEM, srv: srv, pool: pool}
}

// client returns an HTTPS client trusting the EST CA, presenting cert if given.
func (l *lab) client(cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{RootCAs: l.pool}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 30 * time.Second}
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request; user "" sends no Basic credentials.
func (l *lab) do(t *testing.T, cert *tls.Certificate, method, path, user, pass, contentType string, body []byte) reply {
	t.Helper()
	req, err := http.NewRequest(method, l.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := l.client(cert).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, b}
}

func (l *lab) enroll(t *testing.T, cert *tls.Certificate, op, user, pass string, csrB64 []byte) reply {
	t.Helper()
	return l.do(t, cert, http.MethodPost, PathPrefix+op, user, pass, mediaPKCS10, csrB64)
}

// newKey makes a P-256 key.
var newKey = testpki.NewKey

// csrB64 is a base64 DER CSR for cn (and DNS SANs), signed by key.
func csrB64(t testing.TB, key crypto.Signer, cn string, dns ...string) []byte {
	t.Helper()
	return []byte(base64.StdEncoding.EncodeToString(testpki.CSR(t, key, cn, dns...)))
}

// issuedCert decodes a 200 certs-only reply.
func issuedCert(t *testing.T, r reply) *x509.Certificate {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != mediaCertsOnly {
		t.Fatalf("Content-Type %q, want %q", ct, mediaCertsOnly)
	}
	der, err := decodeBase64(r.body)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := parseCertsOnly(der)
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 1 {
		t.Fatalf("%d certificates in the reply, want 1", len(certs))
	}
	return certs[0]
}

func tlsCert(cert *x509.Certificate, key crypto.Signer) *tls.Certificate {
	return &tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
}

// testCA is a bootstrap (manufacturer) CA made in the test.
type testCA = testpki.CA

var newTestCA = testpki.NewCA
