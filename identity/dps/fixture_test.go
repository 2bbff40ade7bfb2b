package dps

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// enrollmentKey is the symmetric key the fake DPS and the device share.
const enrollmentKey = "NMgJDvdKTxjLi+xBxxkDDEwDJxEvOE5u8BiT0mVgPeg="

func hmacSigner(t testing.TB, keyB64 string) func(context.Context, []byte) ([]byte, error) {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(keyB64)
	if err != nil {
		t.Fatal(err)
	}
	return func(_ context.Context, data []byte) ([]byte, error) {
		m := hmac.New(sha256.New, key)
		m.Write(data)
		return m.Sum(nil), nil
	}
}

// reply is one canned answer of the fake DPS.
type reply struct {
	status int
	header map[string]string
	body   string
}

// seen is one request the fake DPS received.
type seen struct {
	method, path, rawPath, query string
	header                       http.Header
	body                         []byte
	peerCerts                    []*x509.Certificate
}

// fakeDPS answers requests with the queued replies, in order; the last
// one repeats. It records every request.
type fakeDPS struct {
	srv *httptest.Server
	mu  sync.Mutex
	q   []reply
	got []seen
}

func newFakeDPS(t *testing.T, tlsCfg *tls.Config, replies ...reply) *fakeDPS {
	t.Helper()
	f := &fakeDPS{q: replies}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if tlsCfg != nil {
		f.srv.TLS = tlsCfg
	}
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeDPS) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	s := seen{method: r.Method, path: r.URL.Path, rawPath: r.URL.EscapedPath(), query: r.URL.RawQuery, header: r.Header.Clone(), body: body}
	if r.TLS != nil {
		s.peerCerts = r.TLS.PeerCertificates
	}
	f.got = append(f.got, s)
	rep := f.q[0]
	if len(f.q) > 1 {
		f.q = f.q[1:]
	}
	f.mu.Unlock()
	if _, ok := rep.header["Content-Type"]; !ok {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
	}
	for k, v := range rep.header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(rep.status)
	io.WriteString(w, rep.body)
}

func (f *fakeDPS) requests() []seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seen(nil), f.got...)
}

func (f *fakeDPS) anchors() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(f.srv.Certificate())
	return p
}

// sleepRecorder records the waits Register asks for without waiting.
type sleepRecorder struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleepRecorder) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleepRecorder) waits() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

var fixedNow = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// symmetricConfig is a symmetric-key registration against f.
func symmetricConfig(t *testing.T, f *fakeDPS, s *sleepRecorder) Config {
	return Config{
		Endpoint:       f.srv.URL,
		IDScope:        "0ne00000001",
		RegistrationID: "dev-1",
		SAS:            hmacSigner(t, enrollmentKey),
		TrustAnchors:   f.anchors(),
		Sleep:          s.sleep,
		Now:            func() time.Time { return fixedNow },
		Timeout:        5 * time.Second,
	}
}

// opaqueSigner is a crypto.Signer that is not a concrete key type, like a
// handle to a key held by the Keys service.
type opaqueSigner struct{ k crypto.Signer }

func (o opaqueSigner) Public() crypto.PublicKey { return o.k.Public() }
func (o opaqueSigner) Sign(r io.Reader, d []byte, opts crypto.SignerOpts) ([]byte, error) {
	return o.k.Sign(r, d, opts)
}

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

var serial int64 = 100

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert, key}
}

// clientCert issues a client certificate for cn whose key is reachable only
// through crypto.Signer.
func (ca *testCA) clientCert(t *testing.T, cn string) *tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: opaqueSigner{key}}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}
