package cloudhttptest

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
	"math/big"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var serial atomic.Int64

// NewKey makes a P-256 key.
func NewKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// CA is a certificate authority valid for an hour around now.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// NewCA makes a self-signed CA named name.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key := NewKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: cert, Key: key}
}

// Issue signs a certificate for pub named cn; tmpl may be nil for a plain
// client certificate. It is valid for an hour around now unless tmpl says.
func (ca *CA) Issue(t testing.TB, cn string, pub crypto.PublicKey, tmpl *x509.Certificate) *x509.Certificate {
	t.Helper()
	if tmpl == nil {
		tmpl = &x509.Certificate{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	}
	tmpl.SerialNumber = big.NewInt(serial.Add(1))
	tmpl.Subject = pkix.Name{CommonName: cn}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Now().Add(-time.Hour)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = time.Now().Add(time.Hour)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// ClientCert issues a client certificate for cn whose key is reachable only
// through crypto.Signer, like a key held by the Keys service.
func (ca *CA) ClientCert(t testing.TB, cn string) *tls.Certificate {
	t.Helper()
	key := NewKey(t)
	cert := ca.Issue(t, cn, key.Public(), nil)
	return &tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: OpaqueSigner{key}}
}

// Pool is a pool holding the CA certificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// SelfSigned is a server certificate for name that is its own trust anchor.
func SelfSigned(t testing.TB, name string) tls.Certificate {
	t.Helper()
	key := NewKey(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// OpaqueSigner is a crypto.Signer that is not a concrete key type, like a
// handle to a key held by the Keys service.
type OpaqueSigner struct{ K crypto.Signer }

func (o OpaqueSigner) Public() crypto.PublicKey { return o.K.Public() }
func (o OpaqueSigner) Sign(r io.Reader, d []byte, opts crypto.SignerOpts) ([]byte, error) {
	return o.K.Sign(r, d, opts)
}

// HMACSigner signs as a SAS signer holding the base64 symmetric key keyB64.
func HMACSigner(t testing.TB, keyB64 string) func(context.Context, []byte) ([]byte, error) {
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

// SleepRecorder records the waits a client asks for without waiting.
type SleepRecorder struct {
	mu sync.Mutex
	d  []time.Duration
}

// Sleep records d and returns ctx.Err().
func (s *SleepRecorder) Sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

// Waits returns the recorded waits.
func (s *SleepRecorder) Waits() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}
