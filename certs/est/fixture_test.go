package est

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/smallstep/pkcs7"

	"github.com/edgev2/edgev2/internal/cloudhttp/cloudhttptest"
	"github.com/edgev2/edgev2/internal/testpki"
)

// testCA is a CA that issues the fixture server's TLS certificate and the
// certificates the fake EST server enrolls.
type testCA = testpki.CA

var (
	newKey = testpki.NewKey
	newCA  = testpki.NewCA
)

// newCSR makes a DER CSR for a fresh key.
func newCSR(t testing.TB, cn string) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key := newKey(t)
	return testpki.CSR(t, key, cn), key
}

// certsOnly encodes certs as RFC 7030 sends them: base64 of a PKCS#7
// certs-only message, in 64-column CRLF lines like RFC 7030's examples.
func certsOnly(t testing.TB, certs ...*x509.Certificate) []byte {
	t.Helper()
	var raw []byte
	for _, c := range certs {
		raw = append(raw, c.Raw...)
	}
	der, err := pkcs7.DegenerateCertificate(raw)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.StdEncoding.EncodeToString(der)
	var out []byte
	for len(b64) > 64 {
		out = append(out, b64[:64]+"\r\n"...)
		b64 = b64[64:]
	}
	return append(out, b64+"\r\n"...)
}

// estServer is an in-process EST server over TLS with a certificate for
// 127.0.0.1 issued by ca. handler answers every request.
type estServer struct {
	*cloudhttptest.Server
	ca *testCA
}

func newESTServer(t testing.TB, ca *testCA, tlsCfg *tls.Config, handler http.HandlerFunc) *estServer {
	t.Helper()
	srvKey := newKey(t)
	srvCert := ca.Issue(t, "est.test", srvKey.Public(), &x509.Certificate{
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:    []string{"localhost"},
	})
	if tlsCfg == nil {
		tlsCfg = &tls.Config{}
	}
	if len(tlsCfg.Certificates) == 0 {
		tlsCfg.Certificates = []tls.Certificate{{Certificate: [][]byte{srvCert.Raw}, PrivateKey: srvKey, Leaf: srvCert}}
	}
	return &estServer{Server: cloudhttptest.NewServer(t, tlsCfg, nil, handler), ca: ca}
}

// client returns an EST client for the server, trusting its CA, with
// polls recorded instead of slept.
func (s *estServer) client(t testing.TB, cfg Config) *Client {
	t.Helper()
	if cfg.URL == "" {
		cfg.URL = s.URL + "/.well-known/est"
	}
	if cfg.TrustAnchors == nil {
		cfg.TrustAnchors = s.ca.Pool()
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// enrollHandler answers simpleenroll/simplereenroll like a real CA: it
// decodes the base64 CSR and returns a certificate for its key.
func enrollHandler(t testing.TB, ca *testCA, extra ...*x509.Certificate) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		der, err := base64.StdEncoding.DecodeString(string(body))
		if err != nil {
			http.Error(w, "bad base64", http.StatusBadRequest)
			return
		}
		csr, err := x509.ParseCertificateRequest(der)
		if err != nil || csr.CheckSignature() != nil {
			http.Error(w, "bad CSR", http.StatusBadRequest)
			return
		}
		leaf := ca.Issue(t, csr.Subject.CommonName, csr.PublicKey, nil)
		w.Header().Set("Content-Type", "application/pkcs7-mime; smime-type=certs-only")
		w.Write(certsOnly(t, append(extra, leaf)...))
	}
}

// opaqueSigner hides the concrete key type, like a key held by the Keys
// service behind D-Bus.
type opaqueSigner struct {
	pub  crypto.PublicKey
	sign func(io.Reader, []byte, crypto.SignerOpts) ([]byte, error)
	uses atomic.Int32
}

func (s *opaqueSigner) Public() crypto.PublicKey { return s.pub }
func (s *opaqueSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	s.uses.Add(1)
	return s.sign(r, digest, opts)
}
