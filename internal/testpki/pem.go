package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"os"
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
func WritePEM(t TB, path string, certs ...*x509.Certificate) string {
	t.Helper()
	if err := os.WriteFile(path, PEM(certs...), 0o644); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
	return path
}

// ECKeyPEM is key as a SEC 1 "EC PRIVATE KEY" PEM block.
func ECKeyPEM(t TB, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatalf("marshal EC key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

// PKCS8PEM is key as a PKCS #8 "PRIVATE KEY" PEM block.
func PKCS8PEM(t TB, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("marshal PKCS #8 key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}
