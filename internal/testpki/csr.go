package testpki

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"
)

// CSR is a DER certificate request signed by key for subject cn with the
// given DNS names.
func CSR(t testing.TB, key crypto.Signer, cn string, dns ...string) []byte {
	t.Helper()
	return CSRFor(t, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: dns})
}

// CSRFor is a DER certificate request signed by key from a template the
// test spells out.
func CSRFor(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}
