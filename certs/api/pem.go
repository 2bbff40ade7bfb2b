package api

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"strings"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/label"
)

// MaxPEM bounds an imported chain.
const MaxPEM = 256 << 10

// ValidateID checks a certificate id (same rules as key ids).
func ValidateID(id string) error {
	if msg := label.ValidateID("certificate id", id); msg != "" {
		return fault.New(fault.InvalidArgs, "%s", msg)
	}
	return nil
}

// EncodeChain renders certificates as PEM, in order.
func EncodeChain(chain []*x509.Certificate) string {
	var b bytes.Buffer
	for _, c := range chain {
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.String()
}

// ParseChainPEM parses a PEM chain, leaf first. Anything but CERTIFICATE
// blocks (a private key pasted by mistake, stray text) is refused, so a
// secret never ends up in the certificate store.
func ParseChainPEM(data string) ([]*x509.Certificate, error) {
	if len(data) > MaxPEM {
		return nil, fault.New(fault.InvalidArgs, "PEM is %d bytes; the limit is %d", len(data), MaxPEM)
	}
	rest := []byte(data)
	var chain []*x509.Certificate
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			if strings.Contains(block.Type, "PRIVATE KEY") {
				return nil, fault.New(fault.InvalidArgs, "the PEM holds a private key; import certificates only (keys go to the Keys service)")
			}
			return nil, fault.New(fault.InvalidArgs, "the PEM holds a %q block; only CERTIFICATE blocks are accepted", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fault.New(fault.InvalidArgs, "certificate %d of the PEM does not parse: %v", len(chain)+1, err)
		}
		chain = append(chain, c)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, fault.New(fault.InvalidArgs, "the PEM has text that is not a certificate block after certificate %d", len(chain))
	}
	if len(chain) == 0 {
		return nil, fault.New(fault.InvalidArgs, "the PEM holds no certificate")
	}
	return chain, nil
}
