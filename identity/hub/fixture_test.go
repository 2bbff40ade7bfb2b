package hub

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
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/edgev2/edgev2/internal/labcloud/labhost"
)

// deviceKey is the device's symmetric key, shared with the fake hub.
const deviceKey = "zqtyZCGuKg/UHvSzgYnNod/uHChWrzGGtHSgPi4cC2U="

const hubName = "myhub.azure-devices.net"

var fixedNow = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

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

// seen is one request the fake hub received.
type seen struct {
	method, rawPath, query string
	header                 http.Header
	body                   []byte
	peerCerts              []*x509.Certificate
}

// fakeHub answers every request with reply and records what it got.
type fakeHub struct {
	srv   *httptest.Server
	host  labhost.Host // reached as a real hub is: a bare name on 443
	mu    sync.Mutex
	got   []seen
	reply func(r seen) (status int, header map[string]string, body string)
}

func newFakeHub(t *testing.T, tlsCfg *tls.Config, reply func(seen) (int, map[string]string, string)) *fakeHub {
	t.Helper()
	f := &fakeHub{reply: reply}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	var ln net.Listener
	f.host, ln = labhost.Listen(t)
	f.srv.Listener.Close()
	f.srv.Listener = ln
	if tlsCfg == nil {
		tlsCfg = &tls.Config{}
	}
	tlsCfg = tlsCfg.Clone()
	tlsCfg.Certificates = []tls.Certificate{serverCert(t, f.host.Name)}
	f.srv.TLS = tlsCfg
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeHub) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s := seen{method: r.Method, rawPath: r.URL.EscapedPath(), query: r.URL.RawQuery, header: r.Header.Clone(), body: body}
	if r.TLS != nil {
		s.peerCerts = r.TLS.PeerCertificates
	}
	f.mu.Lock()
	f.got = append(f.got, s)
	f.mu.Unlock()
	status, header, out := f.reply(s)
	if _, ok := header["Content-Type"]; !ok {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
	}
	for k, v := range header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(status)
	io.WriteString(w, out)
}

func (f *fakeHub) requests() []seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seen(nil), f.got...)
}

func (f *fakeHub) addr() string { return f.host.Name }

// serverCert is a self-signed certificate for name (its own trust anchor).
func serverCert(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func (f *fakeHub) anchors() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(f.srv.Certificate())
	return p
}

// fixed returns a reply func that always answers the same.
func fixed(status int, body string) func(seen) (int, map[string]string, string) {
	return func(seen) (int, map[string]string, string) { return status, nil, body }
}

// sasClient is a SAS-authenticated client for device edge-1 of hubName,
// sending its requests to f.
func sasClient(t *testing.T, f *fakeHub) *Client {
	t.Helper()
	c, err := New(Config{
		HubHost: hubName, GatewayHost: f.addr(), DeviceID: "edge-1",
		SAS: hmacSigner(t, deviceKey), TrustAnchors: f.anchors(),
		Now: func() time.Time { return fixedNow }, Timeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

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
