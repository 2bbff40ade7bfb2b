package certs

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/edgev2/edgev2/certs/config"
	"github.com/edgev2/edgev2/certs/revocation"
	"github.com/edgev2/edgev2/fault"
)

// RevocationState is what certd last learnt about one certificate.
type RevocationState struct {
	CheckedAt time.Time
	Revoked   bool
	Err       error
}

// estIssuers returns the issuers of info's leaf up to an EST trust anchor
// ([est] trusted_certs, else the system roots), verified. A stored chain
// may be one a caller imported: unless it chains to the anchors, its CRL
// distribution points are the caller's URLs and its issuers the caller's
// keys, and certd neither fetches nor believes them.
func (s *Service) estIssuers(info Info, anchors *x509.CertPool) ([]*x509.Certificate, error) {
	intermediates := x509.NewCertPool()
	for _, c := range info.Chain[1:] {
		intermediates.AddCert(c)
	}
	chains, err := info.Leaf().Verify(x509.VerifyOptions{Roots: anchors, Intermediates: intermediates,
		CurrentTime: s.clock.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return nil, fault.Wrap(fault.Failed, err, "certificate %q does not chain to the EST trust anchors, so its CRL is not checked: %v", info.ID, err)
	}
	return chains[0][1:], nil
}

// checkRevoked fetches and verifies the CRL of each distribution point of
// a stored certificate issued under the EST trust anchors and reports
// whether it is revoked.
func (s *Service) checkRevoked(ctx context.Context, info Info) (bool, error) {
	leaf := info.Leaf()
	if len(leaf.CRLDistributionPoints) == 0 {
		return false, nil
	}
	anchors, err := s.estAnchors()
	if err != nil {
		return false, err
	}
	issuers, err := s.estIssuers(info, anchors)
	if err != nil {
		return false, err
	}
	var lastErr error
	for _, dp := range leaf.CRLDistributionPoints {
		crl, err := revocation.FetchCRL(ctx, dp, anchors)
		if err != nil {
			lastErr = err
			continue
		}
		revoked, err := revocation.CheckRevoked(crl, leaf, issuers, s.clock.Now())
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
	for _, id := range config.SortedIDs(s.cfg.Issuance) {
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

// crlNow asks Run for a CRL check at once.
func (s *Service) crlNow() {
	select {
	case s.checkCRL <- struct{}{}:
	default:
	}
}
