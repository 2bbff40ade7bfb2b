package dps

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strings"

	"github.com/edgev2/edgev2/fault"
)

// Certificate issuance at registration (Azure Device Registry certificate
// management). Wire format, as the device SDKs that speak it send and parse
// it (see docs/identity.md, "Operational certificate"):
//   - request: "csr" = base64 of the DER PKCS#10, no PEM armor, with
//     api-version 2025-07-01-preview on the request;
//   - answer: registrationState.issuedCertificateChain = array of base64
//     DER certificates, leaf first; registrationState.trustBundle =
//     {certificates: [{certificate: PEM, metadata}]}.
// The 2021-11-01-preview shape (issuedClientCertificate, one string, PEM
// or base64 DER) is read too.

// APIVersionCSR is the DPS api-version that takes a certificate signing request.
const APIVersionCSR = "2025-07-01-preview"

// Named failures of certificate issuance; each is wrapped in a fault with
// the fix, and matched with errors.Is.
var (
	// ErrAPIVersion: the DPS instance refused the api-version.
	ErrAPIVersion = errors.New("dps-api-version-unsupported")
	// ErrCSRRefused: DPS refused the certificate signing request.
	ErrCSRRefused = errors.New("dps-csr-refused")
	// ErrNotIssued: DPS assigned the device but sent no certificate.
	ErrNotIssued = errors.New("dps-certificate-not-issued")
	// ErrWrongKey: DPS sent a certificate that is not for the CSR's key
	// (or a chain that does not hold together).
	ErrWrongKey = errors.New("dps-certificate-for-another-key")
)

// TrustBundle is registrationState.trustBundle.
type TrustBundle struct {
	Certificates []struct {
		Certificate string `json:"certificate"`
	} `json:"certificates"`
}

// maxChain bounds the certificates DPS may send in a chain or bundle.
const maxChain = 16

// issued reads and checks the certificate fields of an assigned operation
// against the CSR that was sent.
func (c *client) issued(op *Operation, r *Result) error {
	st := op.RegistrationState
	chain, err := decodeIssued(st)
	if err != nil {
		return fault.Wrap(fault.Failed, errors.Join(ErrWrongKey, err), "DPS %s sent an unusable issued certificate for %q: %s", c.host, c.cfg.RegistrationID, fault.Message(err))
	}
	if len(chain) == 0 {
		return fault.Wrap(fault.Failed, ErrNotIssued, "DPS %s assigned %q but issued no certificate for its CSR (fix: link the enrollment to a credential policy, or remove operational_cert)", c.host, c.cfg.RegistrationID)
	}
	csr, err := x509.ParseCertificateRequest(c.cfg.CSR)
	if err != nil {
		return fault.Wrap(fault.InvalidArgs, err, "the CSR sent to DPS does not parse: %v", err)
	}
	leaf := chain[0]
	pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(csr.PublicKey) {
		return fault.Wrap(fault.Failed, ErrWrongKey, "DPS %s issued a certificate (serial %s) that is not for the key of the CSR of %q; nothing is stored (fix: check the DPS credential policy; this is a DPS fault or an attack)", c.host, leaf.SerialNumber.Text(16), c.cfg.RegistrationID)
	}
	for i := 0; i+1 < len(chain); i++ {
		if err := chain[i].CheckSignatureFrom(chain[i+1]); err != nil {
			return fault.Wrap(fault.Failed, errors.Join(ErrWrongKey, err), "DPS %s sent a chain whose certificate %d is not signed by the next: %v", c.host, i, err)
		}
	}
	r.IssuedChain = chain
	if st.TrustBundle != nil {
		for i, tc := range st.TrustBundle.Certificates {
			if i >= maxChain {
				return fault.New(fault.Failed, "DPS %s sent a trust bundle of more than %d certificates", c.host, maxChain)
			}
			certs, err := parseCertText(tc.Certificate)
			if err != nil {
				return fault.Wrap(fault.Failed, err, "DPS %s sent an unusable trust bundle certificate: %v", c.host, err)
			}
			r.TrustBundle = append(r.TrustBundle, certs...)
		}
	}
	return nil
}

// decodeIssued returns the issued chain, leaf first, from
// issuedCertificateChain or issuedClientCertificate; nil when neither is there.
func decodeIssued(st *RegistrationState) ([]*x509.Certificate, error) {
	if len(st.IssuedCertificateChain) > maxChain {
		return nil, fault.New(fault.InvalidArgs, "issuedCertificateChain has more than %d certificates", maxChain)
	}
	var out []*x509.Certificate
	for i, s := range st.IssuedCertificateChain {
		der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
		if err != nil {
			return nil, fault.New(fault.InvalidArgs, "issuedCertificateChain[%d] is not base64", i)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fault.New(fault.InvalidArgs, "issuedCertificateChain[%d] is not a DER certificate: %s", i, sanitize([]byte(err.Error()), 80))
		}
		out = append(out, cert)
	}
	if len(out) == 0 && st.IssuedClientCertificate != "" {
		return parseCertText(st.IssuedClientCertificate)
	}
	return out, nil
}

// parseCertText reads PEM certificates, or one base64 DER certificate.
func parseCertText(s string) ([]*x509.Certificate, error) {
	data := []byte(strings.TrimSpace(s))
	if !bytes.HasPrefix(data, []byte("-----BEGIN")) {
		der, err := base64.StdEncoding.DecodeString(string(data))
		if err != nil {
			return nil, fault.New(fault.InvalidArgs, "certificate is neither PEM nor base64 DER")
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fault.New(fault.InvalidArgs, "certificate does not parse: %s", sanitize([]byte(err.Error()), 80))
		}
		return []*x509.Certificate{c}, nil
	}
	var out []*x509.Certificate
	for len(out) <= maxChain {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fault.New(fault.InvalidArgs, "PEM block %q is not a CERTIFICATE", sanitize([]byte(b.Type), 40))
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fault.New(fault.InvalidArgs, "certificate does not parse: %s", sanitize([]byte(err.Error()), 80))
		}
		out = append(out, c)
	}
	if len(out) == 0 || len(out) > maxChain {
		return nil, fault.New(fault.InvalidArgs, "PEM text holds %d certificates", len(out))
	}
	return out, nil
}
