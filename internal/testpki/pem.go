package testpki

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"testing"
)

// PEM is certs as a PEM bundle of CERTIFICATE blocks, in order.
func PEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// WritePEM writes certs as a PEM bundle to path, readable by everyone (the
// daemons under test run as other users), and returns path.
func WritePEM(t testing.TB, path string, certs ...*x509.Certificate) string {
	t.Helper()
	if err := os.WriteFile(path, PEM(certs...), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
