package certs

import (
	"context"
	"github.com/edgev2/edgev2/certs/config"
	"time"
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
