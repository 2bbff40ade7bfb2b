package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"sync/atomic"
	"time"
)

// serial numbers every certificate whose template does not.
var serial atomic.Int64

// CA is a certificate authority with an in-memory key.
type CA struct {
	Cert *x509.Certificate // the CA's own certificate
	Key  *ecdsa.PrivateKey // the key that signs what it issues
}

// NewCA makes a self-signed P-256 CA named cn, valid for an hour around now,
// that may sign certificates. Each opt edits the template before it is
// signed, for a test whose point is an odd CA (a serial, a key usage, a
// validity period it checks).
func NewCA(t TB, cn string, opts ...func(*x509.Certificate)) *CA {
	t.Helper()
	key := NewKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	for _, opt := range opts {
		opt(tmpl)
	}
	return &CA{Cert: Sign(t, tmpl, tmpl, key.Public(), key), Key: key}
}

// Issue signs a certificate for pub named cn. tmpl may be nil for a plain
// client certificate; it is copied, not changed. The certificate is valid
// for an hour around now and numbered afresh unless tmpl says otherwise.
func (ca *CA) Issue(t TB, cn string, pub crypto.PublicKey, tmpl *x509.Certificate) *x509.Certificate {
	t.Helper()
	c := x509.Certificate{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	if tmpl != nil {
		c = *tmpl
	}
	if c.SerialNumber == nil {
		c.SerialNumber = big.NewInt(serial.Add(1))
	}
	c.Subject = pkix.Name{CommonName: cn}
	if c.NotBefore.IsZero() {
		c.NotBefore = time.Now().Add(-time.Hour)
	}
	if c.NotAfter.IsZero() {
		c.NotAfter = time.Now().Add(time.Hour)
	}
	return Sign(t, &c, ca.Cert, pub, ca.Key)
}

// SubCA issues an intermediate CA named cn with a fresh key.
func (ca *CA) SubCA(t TB, cn string) *CA {
	t.Helper()
	key := NewKey(t)
	cert := ca.Issue(t, cn, key.Public(), &x509.Certificate{IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign})
	return &CA{Cert: cert, Key: key}
}

// ClientCert issues a client certificate for cn whose key is reachable only
// through crypto.Signer, like a key held by the Keys service.
func (ca *CA) ClientCert(t TB, cn string) *tls.Certificate {
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

// PEM is the CA certificate in PEM.
func (ca *CA) PEM() []byte { return PEM(ca.Cert) }

// SelfSigned is a server certificate for name that is its own trust anchor.
func SelfSigned(t TB, name string) tls.Certificate {
	t.Helper()
	key := NewKey(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true}
	return TLS(Sign(t, tmpl, tmpl, key.Public(), key), key)
}

// Sign is x509.CreateCertificate followed by x509.ParseCertificate, for a
// certificate whose whole template the test spells out.
func Sign(t TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, priv crypto.Signer) *x509.Certificate {
	t.Helper()
	cert, err := x509.ParseCertificate(SignDER(t, tmpl, parent, pub, priv))
	if err != nil {
		t.Fatalf("parse certificate: %v", err)
	}
	return cert
}

// SignDER is x509.CreateCertificate alone, for a certificate the test means
// to hand to a parser that must cope with it (Go's own may refuse it).
func SignDER(t TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, priv crypto.Signer) []byte {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, priv)
	if err != nil {
		t.Fatalf("create certificate: %v", err)
	}
	return der
}

// TLS is cert and its key as a tls.Certificate with Leaf set.
func TLS(cert *x509.Certificate, key crypto.Signer) tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
}
