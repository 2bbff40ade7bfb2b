package client

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"fmt"
	"io"
	"time"

	"github.com/edgev2/edgev2/keys/api"
)

// Signer is a crypto.Signer whose private key stays in the Keys service:
// CSRs, certificates signed as a CA and TLS client authentication all sign
// through the bus.
type Signer struct {
	key     *Key
	pub     crypto.PublicKey
	timeout time.Duration
}

var _ crypto.Signer = (*Signer)(nil)

// Signer reads the key's public key once and returns a crypto.Signer for it.
func (k *Key) Signer(ctx context.Context) (*Signer, error) {
	pub, err := k.PublicKey(ctx)
	if err != nil {
		return nil, err
	}
	switch pub.(type) {
	case *ecdsa.PublicKey, *rsa.PublicKey:
	default:
		return nil, fmt.Errorf("key %q has an unsupported public key %T", k.ID, pub)
	}
	return &Signer{key: k, pub: pub, timeout: 30 * time.Second}, nil
}

// Public implements crypto.Signer.
func (s *Signer) Public() crypto.PublicKey { return s.pub }

// Sign implements crypto.Signer: digest is already hashed with opts.HashFunc().
func (s *Signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if h := opts.HashFunc(); h != 0 && h.Size() != len(digest) {
		return nil, fmt.Errorf("digest is %d bytes but %v needs %d", len(digest), h, h.Size())
	}
	mech := api.MechECDSA
	if _, isRSA := s.pub.(*rsa.PublicKey); isRSA {
		mech = api.MechRSAPKCS1
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			if pss.SaltLength != rsa.PSSSaltLengthEqualsHash && pss.SaltLength != rsa.PSSSaltLengthAuto && pss.SaltLength != len(digest) {
				return nil, fmt.Errorf("key %q signs RSA-PSS with a salt as long as the digest, not %d", s.key.ID, pss.SaltLength)
			}
			mech = api.MechRSAPSS
		}
		if opts.HashFunc() == 0 {
			return nil, fmt.Errorf("key %q: RSA signing through the Keys service needs a hashed digest", s.key.ID)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	return s.key.Sign(ctx, mech, digest)
}
