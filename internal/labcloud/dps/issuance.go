package dps

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/edgev2/edgev2/internal/labcloud/hub"
)

// Certificate issuance at registration (Azure Device Registry certificate
// management, DPS api-version 2025-07-01-preview): the device sends a
// PKCS#10 request with its registration, DPS issues an operational client
// certificate from the enrollment's credential policy and returns the chain;
// the hub then authenticates the device by that chain.
//
// Wire shapes, from the device SDKs that speak it:
//   - 2025-07-01-preview: request "csr" = base64 of the DER CSR (no PEM
//     armor); response registrationState.issuedCertificateChain = array of
//     base64 DER certificates, leaf first (Microsoft.Azure.Iot.Device
//     RegistrationRequestPayload / DeviceRegistrationResult; azure-iot-sdk-java
//     DeviceRegistrationResultParser).
//   - 2021-11-01-preview: request "clientCertificateCsr"; response
//     registrationState.issuedClientCertificate, one JSON string, and
//     trustBundle (azure-sdk-for-c az_iot_provisioning_client.c parses the
//     string and un-escapes it; its docs call it PEM; iot-identity-service
//     aziot-dps-client-async model.rs has trustBundle.certificates[].certificate
//     in PEM with metadata).

// API versions that carry certificate issuance.
const (
	APIVersionCSRPreview2021 = "2021-11-01-preview"
	APIVersionCSR            = "2025-07-01-preview"
)

// Key types a credential policy may allow, named as the Keys service names them.
var KeyTypes = []string{"ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096"}

// CredentialPolicy is an enrollment's [dps.enrollments.credential_policy]:
// the enrollment's devices may ask for an operational certificate.
type CredentialPolicy struct {
	// Issuer is the CA that signs: "est" (the labcloud EST CA's issuing CA,
	// an intermediate under the root with [est] intermediate = true).
	Issuer string `toml:"issuer"`
	// Validity is a Go duration ("24h"); default "168h". ADR allows 1 to 90 days;
	// the lab allows from a minute for renewal tests.
	Validity string `toml:"validity"`
	// KeyTypes the CSR's key may be; default all of KeyTypes.
	KeyTypes []string `toml:"key_types"`
	// OnboardingCredential at the hub once a certificate is issued:
	// "refuse" (default: the hub knows the device by its certificate only)
	// or "keep" (the attestation's SAS key or certificate still opens it).
	OnboardingCredential string `toml:"onboarding_credential"`
}

// chainRegistry is a registry that can accept a device by certificate
// chain besides its own mechanism (the lab hub).
type chainRegistry interface {
	EnsureDeviceWithChain(id string, auth hub.Authentication) (hub.Device, error)
}

// Issuer signs operational certificates: the EST CA.
type Issuer interface {
	IssueForCSR(csr *x509.CertificateRequest, validity time.Duration) ([]*x509.Certificate, error)
}

// SetIssuer gives DPS the CA that credential policies name. The labcloud
// wires its EST server here.
func (s *Server) SetIssuer(i Issuer) {
	s.mu.Lock()
	s.issuer = i
	s.mu.Unlock()
}

func (p *CredentialPolicy) validate(key string) error {
	if p.Issuer != "" && p.Issuer != "est" {
		return &ConfigError{Table: "dps", Key: key + ".issuer", Problem: fmt.Sprintf("%q is not a configured CA", p.Issuer), Fix: `use "est"`}
	}
	if p.Validity != "" {
		d, err := time.ParseDuration(p.Validity)
		if err != nil || d < time.Minute || d > 90*24*time.Hour {
			return &ConfigError{Table: "dps", Key: key + ".validity", Problem: fmt.Sprintf("%q is not a duration from 1m to 2160h", p.Validity), Fix: `use e.g. "168h"`}
		}
	}
	switch p.OnboardingCredential {
	case "", "refuse", "keep":
	default:
		return &ConfigError{Table: "dps", Key: key + ".onboarding_credential", Problem: fmt.Sprintf("%q is not refuse or keep", p.OnboardingCredential), Fix: `use "refuse" (default) or "keep"`}
	}
	for _, k := range p.KeyTypes {
		if !slices.Contains(KeyTypes, k) {
			return &ConfigError{Table: "dps", Key: key + ".key_types", Problem: fmt.Sprintf("%q is not a key type", k), Fix: "use " + strings.Join(KeyTypes, ", ")}
		}
	}
	return nil
}

func (p *CredentialPolicy) validity() time.Duration {
	if d, err := time.ParseDuration(p.Validity); err == nil && p.Validity != "" {
		return d
	}
	return 7 * 24 * time.Hour
}

func (p *CredentialPolicy) allows(keyType string) bool {
	if len(p.KeyTypes) == 0 {
		return slices.Contains(KeyTypes, keyType)
	}
	return slices.Contains(p.KeyTypes, keyType)
}

// csrRequest is a checked certificate request of one registration.
type csrRequest struct {
	csr    *x509.CertificateRequest
	legacy bool // sent as clientCertificateCsr: answer issuedClientCertificate too
}

// parseCSR decodes the request's CSR: base64 DER, or PEM ("CERTIFICATE
// REQUEST", as the Embedded C SDK's sample sends it), and checks its
// signature. It returns nil when the body carries none.
func parseCSR(in DeviceRegistration, apiVersion string) (*csrRequest, *dpsError) {
	text, legacy := in.CSR, false
	if in.ClientCertificateCSR != "" {
		if text != "" {
			return nil, errorf(http.StatusBadRequest, CodeBadRequest, "send the certificate signing request once, as csr or clientCertificateCsr")
		}
		text, legacy = in.ClientCertificateCSR, true
	}
	if text == "" {
		return nil, nil
	}
	if apiVersion != APIVersionCSR && apiVersion != APIVersionCSRPreview2021 {
		return nil, errorf(http.StatusBadRequest, CodeBadAPIVersion, "certificate issuance needs api-version %s; api-version %q does not support a certificate signing request", APIVersionCSR, apiVersion)
	}
	der, err := decodeCSR(text)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, CodeBadCSR, "the certificate signing request is not base64 DER or PEM PKCS#10: %v", err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, CodeBadCSR, "the certificate signing request does not parse: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, errorf(http.StatusBadRequest, CodeBadCSR, "the certificate signing request's signature does not verify with its own key: %v", err)
	}
	return &csrRequest{csr: csr, legacy: legacy}, nil
}

func decodeCSR(text string) ([]byte, error) {
	t := strings.TrimSpace(text)
	if strings.HasPrefix(t, "-----BEGIN") {
		b, _ := pem.Decode([]byte(t))
		if b == nil || (b.Type != "CERTIFICATE REQUEST" && b.Type != "NEW CERTIFICATE REQUEST") {
			return nil, fmt.Errorf("no PEM CERTIFICATE REQUEST block")
		}
		return b.Bytes, nil
	}
	return base64.StdEncoding.DecodeString(t)
}

// KeyTypeOf names a public key as Keys does ("ec-p256", "rsa-2048"), or "".
func KeyTypeOf(pub any) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return "ec-p256"
		case elliptic.P384():
			return "ec-p384"
		}
	case *rsa.PublicKey:
		switch k.N.BitLen() {
		case 2048, 3072, 4096:
			return fmt.Sprintf("rsa-%d", k.N.BitLen())
		}
	}
	return ""
}

// checkCSR applies the enrollment's policy: the subject is exactly
// CN=<registration id>, the key type is allowed.
func checkCSR(req *csrRequest, registrationID string, pol *CredentialPolicy) *dpsError {
	csr := req.csr
	if len(csr.Subject.Names) != 1 || !strings.EqualFold(csr.Subject.CommonName, registrationID) {
		return errorf(http.StatusBadRequest, CodeBadCSR, "the certificate signing request's subject %q is not CN=%s; a device may ask only for its own registration id", csr.Subject.String(), registrationID)
	}
	if kt := KeyTypeOf(csr.PublicKey); !pol.allows(kt) {
		if kt == "" {
			kt = fmt.Sprintf("%T", csr.PublicKey)
		}
		return errorf(http.StatusBadRequest, CodeBadCSR, "the certificate signing request's key type %s is not allowed by the enrollment's credential policy", kt)
	}
	return nil
}

// issue signs the CSR and fills the registration state's certificate
// fields; s.mu held (the CA has its own lock, taken after it).
func (s *Server) issue(op *operation, st *DeviceRegistrationState) error {
	if s.issuer == nil {
		return fmt.Errorf("the credential policy names a CA the labcloud did not give DPS")
	}
	chain, err := s.issuer.IssueForCSR(op.csr.csr, op.att.enr.CredentialPolicy.validity())
	if err != nil {
		return err
	}
	if len(chain) < 2 {
		return fmt.Errorf("the issuer returned no CA certificate")
	}
	if t, ok := s.registry.(caTruster); ok {
		t.TrustCAs(chain[1:]) // the hub accepts the device by chain to the issuing CA
	}
	for _, c := range chain[:len(chain)-1] { // leaf and intermediates; the root is in the trust bundle
		st.IssuedCertificateChain = append(st.IssuedCertificateChain, base64.StdEncoding.EncodeToString(c.Raw))
	}
	if op.csr.legacy {
		var sb strings.Builder
		for _, c := range chain[:len(chain)-1] {
			pem.Encode(&sb, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
		}
		st.IssuedClientCertificate = sb.String()
	}
	root := chain[len(chain)-1]
	t1, t256 := hub.Thumbprints(root)
	st.TrustBundle = &TrustBundle{ID: "labcloud-est", Etag: t256[:16], Certificates: []TrustBundleCertificate{{
		Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw})),
		Metadata: CertificateMetadata{SubjectName: root.Subject.String(), IssuerName: root.Issuer.String(),
			SHA1Thumbprint: t1, SHA256Thumbprint: t256, NotBeforeUtc: dpsTime(root.NotBefore), NotAfterUtc: dpsTime(root.NotAfter),
			SerialNumber: strings.ToUpper(root.SerialNumber.Text(16)), Version: root.Version},
	}}}
	s.log.Info("DPS issued an operational certificate", "registration_id", op.registrationID, "serial", chain[0].SerialNumber.Text(16), "not_after", chain[0].NotAfter.UTC().Format(time.RFC3339))
	return nil
}
