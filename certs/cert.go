// Package certs is the domain of the Certificates service: a store of PEM
// chains, issuance (self-signed, local CA, EST) and automatic renewal.
package certs

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"time"

	"github.com/edgev2/edgev2/certs/api"
)

// Info describes a stored certificate chain.
type Info struct {
	ID        string
	Chain     []*x509.Certificate // leaf first
	Preloaded bool
	RenewAt   time.Time // zero when the certificate is not renewed automatically
}

// Leaf is the chain's first certificate.
func (i Info) Leaf() *x509.Certificate { return i.Chain[0] }

// PEM renders the chain, leaf first.
func (i Info) PEM() string { return api.EncodeChain(i.Chain) }

// Fingerprint is the SHA-256 of the leaf's DER, lower-case hex.
func (i Info) Fingerprint() string {
	sum := sha256.Sum256(i.Leaf().Raw)
	return hex.EncodeToString(sum[:])
}
