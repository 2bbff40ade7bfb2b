package dps

import (
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/edgev2/edgev2/internal/labcloud/hub"
	"github.com/edgev2/edgev2/internal/labcloud/pemfile"
)

// enrollment is a configured enrollment with its credentials decoded.
type enrollment struct {
	Enrollment
	keys  [][]byte            // symmetric: primary, secondary
	certs []*x509.Certificate // x509: the device certificate, or the group's CAs
	pool  *x509.CertPool      // x509 group: the CAs
	thumb string              // x509 individual: upper-case hex thumbprint
	ek    *tpm2.TPMTPublic    // tpm: the enrolled endorsement key
}

func loadEnrollment(e Enrollment, i int) (*enrollment, error) {
	out := &enrollment{Enrollment: e}
	key := fmt.Sprintf("enrollments[%d]", i)
	for _, v := range []string{e.PrimaryKey, e.SecondaryKey} {
		if v == "" {
			continue
		}
		k, err := hub.DecodeKey(v)
		if err != nil {
			return nil, &ConfigError{Table: "dps", Key: key, Problem: err.Error()}
		}
		out.keys = append(out.keys, k)
	}
	if e.Attestation == AttestationTPM {
		ek, err := loadEndorsementKey(e, key)
		if err != nil {
			return nil, err
		}
		out.ek = ek
	}
	out.thumb = strings.ToUpper(strings.ReplaceAll(e.CertificateThumbprint, ":", ""))
	if e.CertificateFile != "" {
		certs, err := pemfile.ReadCertificates(e.CertificateFile)
		if err != nil {
			return nil, &ConfigError{Table: "dps", Key: key + ".certificate_file", Problem: err.Error(), Fix: "name a PEM certificate file"}
		}
		out.certs = certs
		if e.isGroup() {
			out.pool = x509.NewCertPool()
			for _, c := range certs {
				out.pool.AddCert(c)
			}
		}
	}
	return out, nil
}

// attested is a device whose attestation verified.
type attested struct {
	enr      *enrollment
	deviceID string
	auth     hub.Authentication // what the hub registers for the device
	tpm      bool               // TPM attestation: auth is set at assignment
}

func unauthorized(format string, args ...any) *dpsError {
	return errorf(http.StatusUnauthorized, CodeUnauthorized, format, args...)
}

// attest verifies the caller of a request for registrationID: a SAS
// token (symmetric key) in Authorization, else the TLS client certificate.
// A TPM register without either gets the TPM challenge.
func (s *Server) attest(r *http.Request, registrationID string, now time.Time, reg *DeviceRegistration) (*attested, *dpsError) {
	if h := r.Header.Get("Authorization"); h != "" {
		tok, err := hub.ParseSAS(h)
		if err != nil {
			return nil, unauthorized("Unauthorized: %v", err)
		}
		return s.attestSymmetric(tok, registrationID, now)
	}
	if reg != nil && reg.TPM != nil && (r.TLS == nil || len(r.TLS.PeerCertificates) == 0) {
		return nil, s.tpmChallenge(registrationID, reg.TPM)
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		return s.attestX509(r.TLS.PeerCertificates, registrationID, now)
	}
	return nil, unauthorized("Unauthorized: no SharedAccessSignature and no client certificate")
}

func (s *Server) individual(registrationID string) *enrollment {
	for _, e := range s.enrollments {
		if !e.isGroup() && strings.EqualFold(e.RegistrationID, registrationID) {
			return e
		}
	}
	return nil
}

func (s *Server) attestSymmetric(tok *hub.SAS, registrationID string, now time.Time) (*attested, *dpsError) {
	want := s.cfg.IDScope + "/registrations/" + registrationID
	if !strings.EqualFold(tok.Resource, want) {
		return nil, unauthorized("Unauthorized: the token is for %q, not %q", tok.Resource, want)
	}
	if tok.KeyName != "registration" {
		return nil, unauthorized("Unauthorized: skn must be \"registration\"")
	}
	if !now.Before(tok.Expiry) {
		return nil, unauthorized("Unauthorized: the token expired at %s", tok.Expiry.UTC().Format(time.RFC3339))
	}
	if e := s.individual(registrationID); e != nil {
		if e.Attestation == AttestationTPM {
			return s.attestTPM(e, tok, registrationID, now)
		}
		if e.Attestation != AttestationSymmetricKey {
			return nil, unauthorized("Unauthorized: the enrollment of %q uses %s attestation", registrationID, e.Attestation)
		}
		if err := tok.Verify(now, e.keys...); err != nil {
			return nil, unauthorized("Unauthorized: %v", err)
		}
		if e.Disabled {
			return nil, unauthorized("Unauthorized: the enrollment of %q is disabled", registrationID)
		}
		deviceID := e.DeviceID
		if deviceID == "" {
			deviceID = registrationID
		}
		return &attested{enr: e, deviceID: deviceID, auth: sasAuth(e.PrimaryKey, e.SecondaryKey)}, nil
	}
	groups := 0
	for _, e := range s.enrollments {
		if !e.isGroup() || e.Attestation != AttestationSymmetricKey {
			continue
		}
		groups++
		var derived [][]byte
		for _, k := range e.keys {
			derived = append(derived, hub.DeriveKey(k, registrationID))
		}
		if tok.Verify(now, derived...) != nil {
			continue
		}
		if e.Disabled {
			return nil, unauthorized("Unauthorized: the enrollment group %q is disabled", e.GroupID)
		}
		var b64 [2]string
		for i, k := range derived {
			b64[i] = base64.StdEncoding.EncodeToString(k)
		}
		return &attested{enr: e, deviceID: registrationID, auth: sasAuth(b64[0], b64[1])}, nil
	}
	if groups == 0 {
		return nil, errorf(http.StatusNotFound, CodeEnrollmentNotFound, "Enrollment not found for registration %q", registrationID)
	}
	return nil, unauthorized("Unauthorized: the token verifies with no enrollment")
}

func sasAuth(primary, secondary string) hub.Authentication {
	if secondary == "" {
		secondary = primary
	}
	return hub.Authentication{Type: hub.AuthSAS, SymmetricKey: &hub.SymmetricKey{PrimaryKey: primary, SecondaryKey: secondary}}
}

func (s *Server) attestX509(chain []*x509.Certificate, registrationID string, now time.Time) (*attested, *dpsError) {
	leaf := chain[0]
	if !strings.EqualFold(leaf.Subject.CommonName, registrationID) {
		return nil, unauthorized("Invalid certificate. The subject common name %q is not the registration id %q", leaf.Subject.CommonName, registrationID)
	}
	if now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		return nil, unauthorized("Invalid certificate. It is outside its validity period")
	}
	t1, t256 := hub.Thumbprints(leaf)
	auth := hub.Authentication{Type: hub.AuthSelfSigned, X509Thumbprint: &hub.X509Thumbprint{PrimaryThumbprint: t256, SecondaryThumbprint: t256}}
	if e := s.individual(registrationID); e != nil {
		if e.Attestation != AttestationX509 {
			return nil, unauthorized("Unauthorized: the enrollment of %q uses %s attestation", registrationID, e.Attestation)
		}
		match := e.thumb != "" && (e.thumb == t1 || e.thumb == t256)
		for _, c := range e.certs {
			match = match || c.Equal(leaf)
		}
		if !match {
			return nil, unauthorized("Invalid certificate.")
		}
		if e.Disabled {
			return nil, unauthorized("Unauthorized: the enrollment of %q is disabled", registrationID)
		}
		deviceID := e.DeviceID
		if deviceID == "" {
			deviceID = registrationID
		}
		return &attested{enr: e, deviceID: deviceID, auth: auth}, nil
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	groups := 0
	for _, e := range s.enrollments {
		if !e.isGroup() || e.Attestation != AttestationX509 {
			continue
		}
		groups++
		_, err := leaf.Verify(x509.VerifyOptions{Roots: e.pool, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		if err != nil {
			continue
		}
		if e.Disabled {
			return nil, unauthorized("Unauthorized: the enrollment group %q is disabled", e.GroupID)
		}
		// As DPS does: a device of an X.509 group is a certificateAuthority
		// device, authenticated by its chain to the group's CA, so a renewed
		// certificate from the same CA needs no new registration.
		return &attested{enr: e, deviceID: registrationID, auth: hub.Authentication{Type: hub.AuthCertificateAuthority}}, nil
	}
	if groups == 0 {
		return nil, errorf(http.StatusNotFound, CodeEnrollmentNotFound, "Enrollment not found for registration %q", registrationID)
	}
	return nil, unauthorized("Invalid certificate.")
}
