package workload

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// SignerSource is what ModuleSigner needs of the Identity service.
type SignerSource interface {
	// OpenModuleSigner returns a Keys session restricted to SignDerived on
	// the module-key master, and that key's id.
	OpenModuleSigner(ctx context.Context) (SignerSession, string, error)
	// ModuleSigning returns the module's primary and secondary key
	// derivations at its current generation.
	ModuleSigning(ctx context.Context, module string) (primary, secondary []byte, err error)
	// SignAsModule signs through the Identity service (the fallback).
	SignAsModule(ctx context.Context, module, key string, data []byte) ([]byte, error)
}

// SignerSession is a received Keys session (keys/client.Session).
type SignerSession interface {
	SignDerived(ctx context.Context, keyID string, derivation, data []byte) ([]byte, error)
	Close() error
}

// signerRetry is how long ModuleSigner signs through the Identity service
// after identityd refused or failed to hand out a module signer.
const signerRetry = 30 * time.Second

// ModuleSigner signs module tokens with keyd directly, over the module
// signer identityd hands out (one bus hop instead of two), with the
// derivations identityd names per module, cached for that session only:
// identityd ends the session when module identities change, which drops
// the cache. Any error on the session sends the call through the Identity
// service, and the next call asks for a new session.
type ModuleSigner struct {
	src SignerSource
	log *slog.Logger

	mu      sync.Mutex
	sess    SignerSession
	keyID   string
	epoch   uint64 // counts sessions; cache entries are of one
	derivs  map[string]moduleDerivations
	retryAt time.Time

	direct atomic.Uint64
}

// SignedDirect is how many signatures went over the module signer (not
// through identityd), for tests and stats.
func (s *ModuleSigner) SignedDirect() uint64 { return s.direct.Load() }

type moduleDerivations struct {
	epoch              uint64
	primary, secondary []byte
}

// NewModuleSigner signs over src's module signer.
func NewModuleSigner(src SignerSource, log *slog.Logger) *ModuleSigner {
	return &ModuleSigner{src: src, log: log, derivs: map[string]moduleDerivations{}}
}

// SignAsModule is HMAC-SHA256 with the module's key ("primary" or
// "secondary"), byte for byte what Identity1.SignAsModule answers.
func (s *ModuleSigner) SignAsModule(ctx context.Context, module, key string, data []byte) ([]byte, error) {
	if sess, keyID, epoch := s.session(ctx); sess != nil {
		d, err := s.derivation(ctx, module, key, epoch)
		if err == nil {
			sig, err := sess.SignDerived(ctx, keyID, d, data)
			if err == nil {
				s.direct.Add(1)
				return sig, nil
			}
			s.log.Info("module signer failed; signing through identityd", "module", module, "err", err)
			s.drop(epoch)
		} else {
			s.log.Debug("no module signing data; signing through identityd", "module", module, "err", err)
		}
	}
	return s.src.SignAsModule(ctx, module, key, data)
}

// Close ends the session.
func (s *ModuleSigner) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sess != nil {
		s.sess.Close()
		s.sess = nil
	}
}

func (s *ModuleSigner) session(ctx context.Context) (SignerSession, string, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sess != nil {
		return s.sess, s.keyID, s.epoch
	}
	if time.Now().Before(s.retryAt) {
		return nil, "", 0
	}
	sess, keyID, err := s.src.OpenModuleSigner(ctx)
	if err != nil {
		s.retryAt = time.Now().Add(signerRetry)
		s.log.Info("no module signer; signing through identityd", "retry_in", signerRetry, "err", err)
		return nil, "", 0
	}
	s.sess, s.keyID = sess, keyID
	s.epoch++
	clear(s.derivs)
	return s.sess, s.keyID, s.epoch
}

// derivation returns the module's derivation for key, asking identityd
// once per module and session. The entry is of the session that was
// current before asking: if identityd revoked it meanwhile, the entry is
// never used with a later one.
func (s *ModuleSigner) derivation(ctx context.Context, module, key string, epoch uint64) ([]byte, error) {
	s.mu.Lock()
	d, ok := s.derivs[module]
	s.mu.Unlock()
	if !ok || d.epoch != epoch {
		primary, secondary, err := s.src.ModuleSigning(ctx, module)
		if err != nil {
			return nil, err
		}
		d = moduleDerivations{epoch: epoch, primary: primary, secondary: secondary}
		s.mu.Lock()
		if s.epoch == epoch && s.sess != nil {
			s.derivs[module] = d
		}
		s.mu.Unlock()
	}
	switch key {
	case "primary":
		return d.primary, nil
	case "secondary":
		return d.secondary, nil
	}
	return nil, fmt.Errorf("no key %q", key) // identityd names the refusal

}

// drop ends session epoch (if still current) and its cache.
func (s *ModuleSigner) drop(epoch uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.epoch != epoch || s.sess == nil {
		return
	}
	s.sess.Close()
	s.sess = nil
	clear(s.derivs)
}
