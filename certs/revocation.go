package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/edgev2/edgev2/internal/fault"
)

// MaxCRLSize caps a fetched CRL; a lab or device CA's CRL is a few KiB.
const MaxCRLSize = 1 << 20

// crlTimeout bounds one CRL fetch.
const crlTimeout = 30 * time.Second

// FetchCRL downloads the CRL at a certificate's CRL distribution point
// (http or https; https is verified against anchors, or the system roots
// when nil). The body is outside input: size-capped, parsed, not trusted
// until CheckRevoked verifies it.
func FetchCRL(ctx context.Context, rawURL string, anchors *x509.CertPool) (*x509.RevocationList, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return nil, fault.New(fault.InvalidArgs, "CRL distribution point %q is not an http(s) URL", rawURL)
	}
	ctx, cancel := context.WithTimeout(ctx, crlTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fault.Wrap(fault.Failed, err, "CRL request for %s", u.Redacted())
	}
	tr := &http.Transport{Proxy: http.ProxyFromEnvironment, TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: anchors}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fault.Wrap(fault.Unavailable, err, "fetch the CRL from %s: %v", u.Redacted(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fault.New(fault.Unavailable, "fetch the CRL from %s: HTTP %d", u.Redacted(), resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxCRLSize+1))
	if err != nil {
		return nil, fault.Wrap(fault.Unavailable, err, "read the CRL from %s: %v", u.Redacted(), err)
	}
	if len(body) > MaxCRLSize {
		return nil, fault.New(fault.Failed, "the CRL at %s is larger than %d bytes", u.Redacted(), MaxCRLSize)
	}
	return ParseCRL(body)
}

// ParseCRL parses a DER (or PEM) CRL.
func ParseCRL(body []byte) (*x509.RevocationList, error) {
	der := body
	if trimmed := bytes.TrimSpace(body); bytes.HasPrefix(trimmed, []byte("-----BEGIN X509 CRL-----")) {
		block, _ := pem.Decode(trimmed)
		if block == nil || block.Type != "X509 CRL" {
			return nil, fault.New(fault.Failed, "the CRL is PEM that does not decode")
		}
		der = block.Bytes
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fault.Wrap(fault.Failed, err, "the CRL does not parse: %v", err)
	}
	return crl, nil
}

// CheckRevoked verifies crl as issued by leaf's issuer — one of issuers
// whose subject is leaf's issuer name and whose key signed the CRL, never a
// certificate the CRL names itself — and reports whether leaf is on it.
func CheckRevoked(crl *x509.RevocationList, leaf *x509.Certificate, issuers []*x509.Certificate, now time.Time) (bool, error) {
	if !bytes.Equal(crl.RawIssuer, leaf.RawIssuer) {
		return false, fault.New(fault.Failed, "the CRL is issued by %q, not by the certificate's issuer %q", crl.Issuer.String(), leaf.Issuer.String())
	}
	verified := false
	for _, is := range issuers {
		if bytes.Equal(is.RawSubject, leaf.RawIssuer) && leaf.CheckSignatureFrom(is) == nil && crl.CheckSignatureFrom(is) == nil {
			verified = true
			break
		}
	}
	if !verified {
		return false, fault.New(fault.Failed, "the CRL for %q is not signed by the certificate's issuer", leaf.Subject.String())
	}
	if !crl.NextUpdate.IsZero() && now.After(crl.NextUpdate) {
		return false, fault.New(fault.Failed, "the CRL for %q is stale (nextUpdate %s)", leaf.Subject.String(), crl.NextUpdate.UTC().Format(time.RFC3339))
	}
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber != nil && e.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
			return true, nil
		}
	}
	return false, nil
}

// RevocationState is what certd last learnt about one certificate.
type RevocationState struct {
	CheckedAt time.Time
	Revoked   bool
	Err       error
}

// issuersOf are the certificates that may have issued chain's leaf and its
// CRL: the stored chain above the leaf and the configured EST anchors.
func (s *Service) issuersOf(info Info) []*x509.Certificate {
	out := append([]*x509.Certificate{}, info.Chain[1:]...)
	for _, id := range s.cfg.EST.TrustedCerts {
		if a, err := s.store.Get(id); err == nil {
			out = append(out, a.Chain...)
		}
	}
	return out
}

// checkRevoked fetches and verifies the CRL of each distribution point of
// a stored certificate and reports whether it is revoked.
func (s *Service) checkRevoked(ctx context.Context, info Info) (bool, error) {
	leaf := info.Leaf()
	if len(leaf.CRLDistributionPoints) == 0 {
		return false, nil
	}
	anchors, err := s.estAnchors()
	if err != nil {
		return false, err
	}
	var lastErr error
	for _, dp := range leaf.CRLDistributionPoints {
		crl, err := FetchCRL(ctx, dp, anchors)
		if err != nil {
			lastErr = err
			continue
		}
		revoked, err := CheckRevoked(crl, leaf, s.issuersOf(info), s.clock.Now())
		if err != nil {
			lastErr = err
			continue
		}
		return revoked, nil
	}
	return false, lastErr
}

// checkRevocations looks every EST-issued certificate up on its CRL, and
// re-enrolls one that is revoked: a fresh simpleenroll with the identity
// that still holds (EST identity, bootstrap, Basic) and a new key.
func (s *Service) checkRevocations(ctx context.Context) {
	s.checkIdentityRevoked(ctx) // first: re-enrollments below may need a new one
	for _, id := range sortedIDs(s.cfg.Issuance) {
		if s.cfg.Issuance[id].Method != "est" {
			continue
		}
		info, err := s.store.Get(id)
		if err != nil {
			continue
		}
		revoked, err := s.checkRevoked(ctx, info)
		s.mu.Lock()
		s.revocation[id] = RevocationState{CheckedAt: s.clock.Now(), Revoked: revoked, Err: err}
		s.mu.Unlock()
		if err != nil {
			s.log.Warn("CRL check failed; keeping the certificate", "cert_id", id, "err", err)
			continue
		}
		if !revoked {
			continue
		}
		s.log.Warn("certificate revoked by its CA; re-enrolling with a new key", "cert_id", id, "serial", info.Leaf().SerialNumber.Text(16))
		if _, err := s.renewWith(ctx, id, renewOptions{force: true, fresh: true, rotate: true}); err != nil {
			s.recordFailure(id, info, fmt.Errorf("re-enroll the revoked certificate: %w", err))
			continue
		}
		s.mu.Lock()
		s.revocation[id] = RevocationState{CheckedAt: s.clock.Now()}
		s.mu.Unlock()
	}
}

// checkIdentityRevoked: a revoked EST identity is dropped with its key, so
// the next fresh enrollment enrolls a new one with the bootstrap identity.
func (s *Service) checkIdentityRevoked(ctx context.Context) {
	e := s.cfg.EST
	if e.IdentityCert == "" || e.BootstrapIdentityCert == "" {
		return
	}
	info, err := s.store.Get(e.IdentityCert)
	if err != nil {
		return
	}
	revoked, err := s.checkRevoked(ctx, info)
	s.mu.Lock()
	s.revocation[e.IdentityCert] = RevocationState{CheckedAt: s.clock.Now(), Revoked: revoked, Err: err}
	s.mu.Unlock()
	if err != nil || !revoked {
		return
	}
	s.issue.Lock()
	defer s.issue.Unlock()
	s.log.Warn("the EST identity is revoked by its CA; it will be enrolled anew with the bootstrap identity and a new key", "cert_id", e.IdentityCert)
	if err := s.store.Delete(e.IdentityCert); err != nil {
		s.log.Error("drop the revoked EST identity", "cert_id", e.IdentityCert, "err", err)
		return
	}
	if err := s.keys.DeleteKey(ctx, e.IdentityKey); err != nil && !fault.Is(err, fault.NotFound) {
		s.log.Error("drop the revoked EST identity's key", "key_id", e.IdentityKey, "err", err)
	}
}

// Revocation returns the last CRL check of id (zero if none yet).
func (s *Service) Revocation(id string) RevocationState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.revocation[id]
}
