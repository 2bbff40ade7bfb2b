package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"time"

	"github.com/edgev2/edgev2/fault"
)

// MaxCSR bounds a certificate request.
const MaxCSR = 64 << 10

// Profile says what kind of certificate to issue.
type Profile struct {
	Validity time.Duration
	// CA makes a certificate authority (BasicConstraints CA, keyCertSign).
	CA bool
	// PathLen limits a CA's chain below it; -1 = unlimited.
	PathLen int
}

// ParseCSR parses a DER certificate request and verifies its signature, so
// a request for a key the requester does not hold is refused.
func ParseCSR(der []byte) (*x509.CertificateRequest, error) {
	if len(der) == 0 {
		return nil, fault.New(fault.InvalidArgs, "the certificate request is empty")
	}
	if len(der) > MaxCSR {
		return nil, fault.New(fault.InvalidArgs, "the certificate request is %d bytes; the limit is %d", len(der), MaxCSR)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fault.New(fault.InvalidArgs, "the certificate request is not valid DER PKCS#10: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fault.New(fault.InvalidArgs, "the certificate request's signature does not verify: %v", err)
	}
	return csr, nil
}

// NewCSR makes a DER certificate request for signer's key.
func NewCSR(signer crypto.Signer, subject pkix.Name, dnsNames []string) ([]byte, error) {
	tmpl := &x509.CertificateRequest{Subject: subject, DNSNames: dnsNames, SignatureAlgorithm: sigAlg(signer.Public())}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, signer)
	if err != nil {
		return nil, fmt.Errorf("make certificate request: %w", err)
	}
	return der, nil
}

// NewCSRLike makes a request for signer's key with exactly the subject
// (raw bytes) and subjectAltNames of cert, as EST re-enrollment requires.
func NewCSRLike(signer crypto.Signer, cert *x509.Certificate) ([]byte, error) {
	tmpl := &x509.CertificateRequest{
		RawSubject:         cert.RawSubject,
		DNSNames:           cert.DNSNames,
		IPAddresses:        cert.IPAddresses,
		EmailAddresses:     cert.EmailAddresses,
		URIs:               cert.URIs,
		SignatureAlgorithm: sigAlg(signer.Public()),
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, signer)
	if err != nil {
		return nil, fmt.Errorf("make certificate request: %w", err)
	}
	return der, nil
}

// sigAlg picks a signature algorithm that fits the key.
func sigAlg(pub crypto.PublicKey) x509.SignatureAlgorithm {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve.Params().BitSize > 256 {
			return x509.ECDSAWithSHA384
		}
		return x509.ECDSAWithSHA256
	case *rsa.PublicKey:
		return x509.SHA256WithRSA
	}
	return x509.UnknownSignatureAlgorithm
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		Key       asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, err
	}
	sum := sha1.Sum(spki.Key.Bytes) // RFC 5280 4.2.1.2 method 1
	return sum[:], nil
}

// template builds the certificate for a verified CSR: subject and SANs from
// the request, key usages from its key type and the profile.
func template(csr *x509.CertificateRequest, p Profile, now time.Time) (*x509.Certificate, error) {
	if p.Validity <= 0 {
		return nil, fault.New(fault.InvalidArgs, "validity must be positive, got %v", p.Validity)
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	skid, err := subjectKeyID(csr.PublicKey)
	if err != nil {
		return nil, fault.New(fault.InvalidArgs, "the request's public key cannot be encoded: %v", err)
	}
	t := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               csr.Subject,
		DNSNames:              csr.DNSNames,
		IPAddresses:           csr.IPAddresses,
		EmailAddresses:        csr.EmailAddresses,
		URIs:                  csr.URIs,
		NotBefore:             now.Add(-backdate(p.Validity)), // tolerate small clock differences
		NotAfter:              now.Add(p.Validity),
		SubjectKeyId:          skid,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	if _, ok := csr.PublicKey.(*rsa.PublicKey); ok {
		t.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	if p.CA {
		t.IsCA = true
		t.KeyUsage |= x509.KeyUsageCertSign | x509.KeyUsageCRLSign
		t.ExtKeyUsage = nil
		if p.PathLen >= 0 {
			t.MaxPathLen = p.PathLen
			t.MaxPathLenZero = p.PathLen == 0
		} else {
			t.MaxPathLen = -1
		}
	}
	return t, nil
}

// backdate is how far NotBefore goes before now: a minute, or a tenth of a
// short lifetime.
func backdate(validity time.Duration) time.Duration {
	return min(time.Minute, validity/10)
}

// IssueSelfSigned signs the CSR with its own key (signer must hold it).
func IssueSelfSigned(csr *x509.CertificateRequest, signer crypto.Signer, p Profile, now time.Time) ([]*x509.Certificate, error) {
	if !samePublicKey(csr.PublicKey, signer.Public()) {
		return nil, fault.New(fault.InvalidArgs, "the certificate request is for a different key than the one that would sign it")
	}
	t, err := template(csr, p, now)
	if err != nil {
		return nil, err
	}
	t.AuthorityKeyId = t.SubjectKeyId
	t.SignatureAlgorithm = sigAlg(signer.Public())
	der, err := x509.CreateCertificate(rand.Reader, t, t, csr.PublicKey, signer)
	if err != nil {
		return nil, fault.Wrap(fault.Unavailable, err, "sign the self-signed certificate: %v", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return []*x509.Certificate{c}, nil
}

// IssueFromCA signs the CSR as the CA whose chain (CA first) and key are
// given. Validity never runs past the CA's own NotAfter.
func IssueFromCA(csr *x509.CertificateRequest, caChain []*x509.Certificate, caKey crypto.Signer, p Profile, now time.Time) ([]*x509.Certificate, error) {
	ca := caChain[0]
	if !ca.IsCA || ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fault.New(fault.InvalidArgs, "issuer certificate %q is not a CA (no BasicConstraints CA or keyCertSign)", ca.Subject.CommonName)
	}
	if !samePublicKey(ca.PublicKey, caKey.Public()) {
		return nil, fault.New(fault.InvalidArgs, "the issuer key does not belong to the issuer certificate %q", ca.Subject.CommonName)
	}
	if now.After(ca.NotAfter) || now.Before(ca.NotBefore) {
		return nil, fault.New(fault.InvalidArgs, "issuer certificate %q is not valid now (valid %s to %s)", ca.Subject.CommonName, ca.NotBefore.Format(time.RFC3339), ca.NotAfter.Format(time.RFC3339))
	}
	t, err := template(csr, p, now)
	if err != nil {
		return nil, err
	}
	if t.NotAfter.After(ca.NotAfter) {
		t.NotAfter = ca.NotAfter
	}
	if t.NotBefore.Before(ca.NotBefore) {
		t.NotBefore = ca.NotBefore
	}
	t.AuthorityKeyId = ca.SubjectKeyId
	t.SignatureAlgorithm = sigAlg(caKey.Public())
	der, err := x509.CreateCertificate(rand.Reader, t, ca, csr.PublicKey, caKey)
	if err != nil {
		return nil, fault.Wrap(fault.Unavailable, err, "sign the certificate as %q: %v", ca.Subject.CommonName, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return append([]*x509.Certificate{c}, caChain...), nil
}

type publicKeyEqual interface{ Equal(crypto.PublicKey) bool }

func samePublicKey(a, b crypto.PublicKey) bool {
	ae, ok := a.(publicKeyEqual)
	return ok && ae.Equal(b)
}
