package est

import (
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"math/big"
	"time"
)

// crlLifetime is the CRL's nextUpdate distance; the CRL is signed afresh
// on every request, so it only bounds how long a fetched copy is trusted.
const crlLifetime = 24 * time.Hour

// crl signs a DER CRL (RFC 5280) of every revoked serial.
func (c *ca) crl(now time.Time) ([]byte, error) {
	c.mu.Lock()
	rl := &x509.RevocationList{
		Number:     big.NewInt(c.idx.CRLNumber + 1),
		ThisUpdate: now.Add(-skewBackdate),
		NextUpdate: now.Add(crlLifetime),
	}
	for _, r := range c.idx.Certs {
		if r.RevokedAt == nil {
			continue
		}
		serial, ok := new(big.Int).SetString(r.Serial, 16)
		if !ok {
			continue
		}
		rl.RevokedCertificateEntries = append(rl.RevokedCertificateEntries, x509.RevocationListEntry{
			SerialNumber:   serial,
			RevocationTime: *r.RevokedAt,
		})
	}
	c.mu.Unlock()
	der, err := x509.CreateRevocationList(rand.Reader, rl, c.cert, c.key)
	if err != nil {
		return nil, fmt.Errorf("sign CRL: %w", err)
	}
	return der, nil
}
