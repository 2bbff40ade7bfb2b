package est

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"time"

	"github.com/edgev2/edgev2/fault"
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

// MaxChainCerts bounds how many certificates chain building considers; a
// real CA hierarchy has a handful.
const MaxChainCerts = 32

// BuildChain completes an issued certificate's chain from what the EST
// server sent: extra (the rest of the enrollment response) and caCerts (its
// /cacerts answer, RFC 7030 4.1). The chain must verify up to a trust
// anchor: a self-signed certificate of caCerts (the server's root, which
// /cacerts delivers over the TLS session the explicit trust anchors
// authenticated, RFC 7030 4.1.3) or one of anchors. It returns the leaf and
// its intermediates, leaf first, without the anchor itself.
func BuildChain(leaf *x509.Certificate, extra, caCerts []*x509.Certificate, anchors *x509.CertPool, now time.Time) ([]*x509.Certificate, error) {
	if leaf == nil {
		return nil, fault.New(fault.InvalidArgs, "no certificate to build a chain for")
	}
	if len(extra)+len(caCerts) > MaxChainCerts {
		return nil, fault.New(fault.InvalidArgs, "the EST server sent %d CA certificates; at most %d are considered", len(extra)+len(caCerts), MaxChainCerts)
	}
	roots := x509.NewCertPool()
	if anchors != nil {
		roots = anchors.Clone()
	}
	inter := x509.NewCertPool()
	for _, c := range append(append([]*x509.Certificate{}, caCerts...), extra...) {
		if c.Equal(leaf) {
			continue
		}
		if selfSigned(c) {
			roots.AddCert(c)
		} else {
			inter.AddCert(c)
		}
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, fault.Wrap(fault.Failed, err, "the issued certificate %q does not verify up to the EST server's CA certificates (/cacerts) or the trust anchors: %v", leaf.Subject.String(), err)
	}
	best := chains[0]
	for _, c := range chains[1:] {
		if len(c) < len(best) {
			best = c
		}
	}
	if len(best) == 1 { // the leaf is itself an anchor
		return best, nil
	}
	return best[:len(best)-1], nil
}

// selfSigned: subject equals issuer and the certificate's own key verifies
// its signature.
func selfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil
}
