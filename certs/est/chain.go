package est

import (
	"bytes"
	"crypto"
	"crypto/x509"

	"github.com/edgev2/edgev2/internal/fault"
)

// orderForKey puts the certificate for csr's public key first, then its
// issuers as far as they link up by name, then whatever else was sent.
func orderForKey(csr *x509.CertificateRequest, certs []*x509.Certificate) ([]*x509.Certificate, error) {
	leaf := -1
	for i, cert := range certs {
		if samePublicKey(csr, cert) {
			leaf = i
			break
		}
	}
	if leaf < 0 {
		return nil, fault.New(fault.Failed, "EST server returned a certificate for a different key (none of the %d certificates matches the CSR's public key)", len(certs))
	}
	out := make([]*x509.Certificate, 0, len(certs))
	used := make([]bool, len(certs))
	out, used[leaf] = append(out, certs[leaf]), true
	for cur := certs[leaf]; !bytes.Equal(cur.RawIssuer, cur.RawSubject); {
		next := -1
		for i, cert := range certs {
			if !used[i] && bytes.Equal(cert.RawSubject, cur.RawIssuer) {
				next = i
				break
			}
		}
		if next < 0 {
			break
		}
		out, used[next] = append(out, certs[next]), true
		cur = certs[next]
	}
	for i, cert := range certs {
		if !used[i] {
			out = append(out, cert)
		}
	}
	return out, nil
}

// samePublicKey compares SubjectPublicKeyInfo bytes, falling back to key
// equality for a CA that re-encodes the same key differently.
func samePublicKey(csr *x509.CertificateRequest, cert *x509.Certificate) bool {
	if bytes.Equal(csr.RawSubjectPublicKeyInfo, cert.RawSubjectPublicKeyInfo) {
		return true
	}
	k, ok := csr.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && cert.PublicKey != nil && k.Equal(cert.PublicKey)
}
