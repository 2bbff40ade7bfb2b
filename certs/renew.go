package certs

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"strings"
	"time"

	"github.com/edgev2/edgev2/certs/api"
	"github.com/edgev2/edgev2/certs/config"
	"github.com/edgev2/edgev2/certs/est"
	"github.com/edgev2/edgev2/fault"
)

// renewAt is when a managed certificate is due: its threshold, or the
// retry time after a failed attempt. Zero for unmanaged certificates.
func (s *Service) renewAt(info Info) time.Time {
	is, ok := s.cfg.Issuance[info.ID]
	if !ok || is.AutoRenew == nil || info.Preloaded {
		return time.Time{}
	}
	leaf := info.Leaf()
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	var at time.Time
	paced := is.AutoRenew.Paced(leaf.NotBefore, leaf.NotAfter)
	switch {
	case is.AutoRenew.ThresholdSpan().Fraction > 0:
		at = leaf.NotBefore.Add(is.AutoRenew.ThresholdSpan().Of(life))
	case paced:
		// "Renew 10d before expiry" of a 1-hour certificate would be due at
		// once, forever: renew part-way through the lifetime it really has.
		at = leaf.NotBefore.Add(time.Duration(float64(life) * config.PaceFraction))
	default:
		at = leaf.NotAfter.Add(-is.AutoRenew.ThresholdSpan().D)
	}
	s.mu.Lock()
	r, failed := s.retry[info.ID]
	last, renewed := s.lastSuccess[info.ID]
	logPacing := paced && !s.pacedLogged[info.ID]
	if logPacing {
		s.pacedLogged[info.ID] = true
	}
	s.mu.Unlock()
	if logPacing {
		s.log.Warn("the CA issued a lifetime at or below the renewal threshold; renewing part-way through the lifetime instead",
			"cert_id", info.ID, "lifetime", life.String(), "threshold", is.AutoRenew.Threshold,
			"renew_at_fraction", config.PaceFraction, "min_interval", is.AutoRenew.MinIntervalDuration().String())
	}
	if failed && r.at.After(at) {
		at = r.at
	}
	// A paced certificate is never renewed sooner than min_interval after
	// the last success; nor is any certificate whose renewal time is already
	// past when it was issued (a CA backdating notBefore far).
	if renewed && (paced || !at.After(last)) && at.Before(last.Add(is.AutoRenew.MinIntervalDuration())) {
		at = last.Add(is.AutoRenew.MinIntervalDuration())
	}
	return at
}

// maxRetryBackoff caps how far consecutive failures stretch the retry interval.
const maxRetryBackoff = 8

// Run renews managed certificates when they are due, until ctx is done.
// The schedule is rebuilt from what is stored each round, so a restart
// resumes it; a failure keeps the old certificate and retries with back-off.
//
// With EST issuance it also checks the CRLs of EST-issued certificates
// every [est] crl_check_interval and when a server says "revoked".
func (s *Service) Run(ctx context.Context) {
	crlEvery := time.Duration(0)
	for _, is := range s.cfg.Issuance {
		if is.Method == "est" {
			crlEvery = s.cfg.EST.CRLInterval()
		}
	}
	nextCRL := s.clock.Now()
	for {
		if crlEvery > 0 && !s.clock.Now().Before(nextCRL) {
			s.checkRevocations(ctx)
			nextCRL = s.clock.Now().Add(crlEvery)
		}
		next := s.renewDue(ctx)
		if crlEvery > 0 && (next.IsZero() || nextCRL.Before(next)) {
			next = nextCRL
		}
		var wait <-chan time.Time
		if !next.IsZero() {
			wait = s.clock.After(next.Sub(s.clock.Now()))
		}
		select {
		case <-ctx.Done():
			return
		case <-wait:
		case <-s.kick:
		case <-s.checkCRL:
			nextCRL = s.clock.Now()
		}
	}
}

// renewDue renews every managed certificate that is due and returns when
// the next one will be (zero if none).
func (s *Service) renewDue(ctx context.Context) time.Time {
	var next time.Time
	for id, is := range s.cfg.Issuance {
		if is.AutoRenew == nil {
			continue
		}
		info, err := s.store.Get(id)
		if err != nil {
			continue // not issued yet: EnsureCertificate issues it
		}
		at := s.renewAt(info)
		if at.IsZero() {
			continue // preloaded: not ours to renew
		}
		if !s.clock.Now().Before(at) {
			if _, err := s.renew(ctx, id, false); err != nil {
				at = s.recordFailure(id, info, err)
			} else if info, err = s.store.Get(id); err == nil {
				at = s.renewAt(info)
			}
		}
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return next
}

func (s *Service) recordFailure(id string, info Info, err error) time.Time {
	is := s.cfg.Issuance[id]
	leaf := info.Leaf()
	base := is.AutoRenew.RetrySpan().Of(leaf.NotAfter.Sub(leaf.NotBefore))
	if base < time.Second {
		base = time.Second
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.retry[id]
	r.failures++
	factor := 1 << min(r.failures-1, 3) // 1, 2, 4, 8 × retry
	r.at = s.clock.Now().Add(base * time.Duration(min(factor, maxRetryBackoff)))
	s.retry[id] = r
	s.log.Warn("certificate renewal failed; keeping the current certificate", "cert_id", id,
		"failures", r.failures, "retry_at", r.at, "not_after", leaf.NotAfter, "err", err)
	return r.at
}

// Ensure issues id per its [cert_issuance] policy if it is missing, expired
// or due for renewal, and returns it.
func (s *Service) Ensure(ctx context.Context, id string) (Info, error) {
	if err := api.ValidateID(id); err != nil {
		return Info{}, err
	}
	info, err := s.Get(ctx, id)
	if err == nil && (info.RenewAt.IsZero() || s.clock.Now().Before(info.RenewAt)) && s.clock.Now().Before(info.Leaf().NotAfter) {
		return info, nil
	}
	if err != nil && !fault.Is(err, fault.NotFound) {
		return Info{}, err
	}
	if _, ok := s.cfg.Issuance[id]; !ok {
		if err != nil {
			return Info{}, fault.New(fault.NotFound, "certificate %q not found and no [cert_issuance.%s] says how to issue it", id, id)
		}
		return info, nil // stored, not managed: nothing to renew
	}
	return s.renew(ctx, id, false)
}

// due reports whether a stored certificate needs issuing again.
func (s *Service) due(info Info) bool {
	now := s.clock.Now()
	return !now.Before(info.Leaf().NotAfter) || (!info.RenewAt.IsZero() && !now.Before(info.RenewAt))
}

// Renew issues id again now, per its [cert_issuance] policy. The old
// certificate (and key) stay in place until the new one is stored.
func (s *Service) Renew(ctx context.Context, id string) (Info, error) {
	return s.renew(ctx, id, true)
}

// renew issues id per policy; unless force, only if it is (still) missing
// or due once the issuance lock is held, so racing callers issue once.
func (s *Service) renew(ctx context.Context, id string, force bool) (Info, error) {
	return s.renewWith(ctx, id, renewOptions{force: force})
}

// renewOptions: force issues even when not due; fresh enrolls anew
// (simpleenroll with the EST identity) instead of re-enrolling with the
// certificate itself; rotate makes a new key whatever the policy says.
type renewOptions struct{ force, fresh, rotate bool }

func (s *Service) renewWith(ctx context.Context, id string, o renewOptions) (Info, error) {
	force := o.force
	if err := api.ValidateID(id); err != nil {
		return Info{}, err
	}
	is, ok := s.cfg.Issuance[id]
	if !ok {
		return Info{}, fault.New(fault.InvalidArgs, "certificate %q has no [cert_issuance.%s] policy, so it cannot be renewed here", id, id)
	}
	s.issue.Lock()
	defer s.issue.Unlock()
	old, oldErr := s.store.Get(id)
	if oldErr == nil && !force {
		if info, err := s.Get(ctx, id); err == nil && !s.due(info) {
			return info, nil // another caller issued it meanwhile
		}
	}
	rotate := (o.rotate || is.AutoRenew != nil && is.AutoRenew.RotateKey) && oldErr == nil
	keyID := is.KeyID
	if rotate {
		keyID = is.KeyID + ".next"
		// A leftover from an interrupted rotation: if the stored certificate
		// is already for it, finish that rotation instead of deleting the key.
		s.recoverRotation(ctx, id, is)
		_ = s.keys.DeleteKey(ctx, keyID)
		if old, oldErr = s.store.Get(id); oldErr != nil {
			return Info{}, oldErr
		}
	}
	algorithms := is.KeyAlgorithms
	var attrs *est.CSRAttrs
	if is.Method == "est" {
		attrs = s.estCSRAttrs(ctx, is)
		if hint := s.keyHint(attrs); hint != "" {
			algorithms = hint + ":" + algorithms // the CA asked for this key type (csrattrs)
		}
	}
	signer, err := s.keys.CreateKeyPair(ctx, keyID, algorithms)
	if err != nil {
		return Info{}, fmt.Errorf("key %q for certificate %q: %w", keyID, id, err)
	}
	subject := pkix.Name{CommonName: is.CommonName}
	if is.Organization != "" {
		subject.Organization = []string{is.Organization}
	}
	reenrollAs := ""
	if is.Method == "est" && oldErr == nil && !o.fresh && s.clock.Now().Before(old.Leaf().NotAfter) {
		reenrollAs = id // authenticate the re-enrollment with the certificate being renewed
	}
	var csrDER []byte
	if reenrollAs != "" {
		// Re-enrollment keeps the subject and subjectAltNames byte for byte
		// (RFC 7030 4.2.2). Only then: a fresh enrollment under certd's own
		// EST credentials asks for the configured names, never those of a
		// stored certificate a caller may have imported.
		csrDER, err = NewCSRLike(signer, old.Leaf())
	} else {
		csrDER, err = NewCSR(signer, subject, is.DNSNames)
	}
	if err != nil {
		return Info{}, err
	}
	if is.Method == "est" {
		if csrDER, err = s.addChallengePassword(csrDER, signer, attrs); err != nil {
			return Info{}, err
		}
	}
	csr, err := ParseCSR(csrDER)
	if err != nil {
		return Info{}, err
	}
	profile := Profile{Validity: is.Validity(), CA: is.CA, PathLen: -1}
	var chain []*x509.Certificate
	switch is.Method {
	case "self_signed":
		chain, err = IssueSelfSigned(csr, signer, profile, s.clock.Now())
	case "local_ca":
		chain, err = s.issueLocalCA(ctx, csr, is.IssuerCert, profile, false)
	case "est":
		chain, err = s.enrollEST(ctx, reenrollAs, csrDER, is.URL, is.Label, true)
	}
	if err != nil {
		if is.Method == "est" && strings.Contains(err.Error(), "revoked") {
			s.crlNow() // the server says a certificate of ours is revoked
		}
		return Info{}, err
	}
	if err := s.store.Put(id, api.EncodeChain(chain)); err != nil {
		return Info{}, err
	}
	if rotate {
		// The new certificate is stored; only now may the new key replace the old.
		if err := s.keys.MoveKey(ctx, keyID, is.KeyID); err != nil {
			return Info{}, fmt.Errorf("swap in the rotated key for %q: %w", id, err)
		}
	}
	s.mu.Lock()
	delete(s.retry, id)
	s.lastSuccess[id] = s.clock.Now()
	s.mu.Unlock()
	if oldErr != nil {
		s.log.Info("certificate issued by policy", "cert_id", id, "method", is.Method, "not_after", chain[0].NotAfter)
	} else {
		s.log.Info("certificate renewed", "cert_id", id, "method", is.Method, "rotated_key", rotate, "not_after", chain[0].NotAfter)
		if s.OnRenewed != nil {
			s.OnRenewed(id)
		}
	}
	s.wake()
	return s.Get(ctx, id)
}

// RecoverRotation finishes key rotations interrupted between storing the
// new certificate and swapping in its key. Call it before serving.
func (s *Service) RecoverRotation(ctx context.Context) {
	s.issue.Lock()
	defer s.issue.Unlock()
	for id, is := range s.cfg.Issuance {
		// Every policy: a revoked certificate is re-enrolled with a new
		// key even without rotate_key.
		s.recoverRotation(ctx, id, is)
	}
}

// recoverRotation: if the stored certificate matches the key kept under
// "<key>.next", that key is moved into place. s.issue is held.
func (s *Service) recoverRotation(ctx context.Context, id string, is *config.Issuance) {
	info, err := s.store.Get(id)
	if err != nil {
		return
	}
	next, err := s.keys.Signer(ctx, is.KeyID+".next")
	if err != nil {
		return
	}
	if samePublicKey(info.Leaf().PublicKey, next.Public()) {
		if err := s.keys.MoveKey(ctx, is.KeyID+".next", is.KeyID); err != nil {
			s.log.Error("finish interrupted key rotation", "cert_id", id, "err", err)
			return
		}
		s.log.Warn("finished a key rotation interrupted by a restart", "cert_id", id)
	}
}
