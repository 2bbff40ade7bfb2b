package testpki

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
)

// CSR is a DER certificate request signed by key for subject cn with the
// given DNS names.
func CSR(t TB, key crypto.Signer, cn string, dns ...string) []byte {
	t.Helper()
	return CSRFor(t, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: dns})
}

// CSRFor is a DER certificate request signed by key from a template the
// test spells out.
func CSRFor(t TB, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatalf("create CSR: %v", err)
	}
	return der
}
