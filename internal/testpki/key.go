package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"io"
)

// NewKey makes a P-256 key.
func NewKey(t TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate P-256 key: %v", err)
	}
	return k
}

// OpaqueSigner is a crypto.Signer that is not a concrete key type, like a
// handle to a key held by the Keys service.
type OpaqueSigner struct {
	K crypto.Signer // the key it hides
}

// Public returns the wrapped key's public half.
func (o OpaqueSigner) Public() crypto.PublicKey { return o.K.Public() }

// Sign signs with the wrapped key.
func (o OpaqueSigner) Sign(r io.Reader, d []byte, opts crypto.SignerOpts) ([]byte, error) {
	return o.K.Sign(r, d, opts)
}
