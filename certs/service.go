package certs

import (
	"context"
	"crypto"
	"log/slog"
	"sync"
	"time"

	"github.com/edgev2/edgev2/certs/api"
	"github.com/edgev2/edgev2/certs/config"
	"github.com/edgev2/edgev2/certs/est"
	"github.com/edgev2/edgev2/fault"
)

// KeyStore is what certd needs of the Keys service: private keys stay
// there, and certd signs through crypto.Signers.
type KeyStore interface {
	// Signer returns a signer for an existing key (fault.NotFound if none).
	Signer(ctx context.Context, keyID string) (crypto.Signer, error)
	// CreateKeyPair makes the key if missing and returns its signer.
	CreateKeyPair(ctx context.Context, keyID, algorithms string) (crypto.Signer, error)
	// MoveKey renames a key, replacing the target.
	MoveKey(ctx context.Context, from, to string) error
	// DeleteKey removes a key.
	DeleteKey(ctx context.Context, keyID string) error
}

// Clock is the time source; tests inject a fake one so nothing sleeps.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// RealClock is the wall clock.
var RealClock Clock = realClock{}

// Service is the certificate store with its issuers and renewal engine.
type Service struct {
	store *Store
	keys  KeyStore
	cfg   *config.Config
	clock Clock
	log   *slog.Logger
	// ESTConfig lets tests adjust the EST client (e.g. its Sleep).
	ESTConfig func(*est.Config)
	// OnRenewed is called after a certificate was renewed.
	OnRenewed func(id string)

	issue sync.Mutex // one issuance at a time: issuance is rare, and it keeps key rotation simple

	mu    sync.Mutex
	retry map[string]retryState
	// lastSuccess is when each certificate was last issued by policy here,
	// for auto_renew.min_interval; pacedLogged: the pacing was logged once.
	lastSuccess map[string]time.Time
	pacedLogged map[string]bool
	revocation  map[string]RevocationState
	kick        chan struct{}
	// checkCRL asks Run for a CRL check now (a TLS failure said "revoked").
	checkCRL chan struct{}
}

type retryState struct {
	at       time.Time
	failures int
}

// NewService serves the store with the given configuration.
func NewService(store *Store, keys KeyStore, cfg *config.Config, clock Clock, log *slog.Logger) *Service {
	if clock == nil {
		clock = RealClock
	}
	if cfg.Issuance == nil {
		cfg.Issuance = map[string]*config.Issuance{}
	}
	return &Service{store: store, keys: keys, cfg: cfg, clock: clock, log: log,
		retry: map[string]retryState{}, lastSuccess: map[string]time.Time{}, pacedLogged: map[string]bool{},
		revocation: map[string]RevocationState{}, kick: make(chan struct{}, 1), checkCRL: make(chan struct{}, 1)}
}

// Get describes a certificate, with its RenewAt.
func (s *Service) Get(ctx context.Context, id string) (Info, error) {
	info, err := s.store.Get(id)
	if err != nil {
		return Info{}, err
	}
	info.RenewAt = s.renewAt(info)
	return info, nil
}

// Exists reports whether id names a certificate.
func (s *Service) Exists(id string) bool {
	_, err := s.store.Get(id)
	return err == nil || fault.Is(err, fault.Unavailable)
}

// List returns every certificate id.
func (s *Service) List() ([]string, error) { return s.store.List() }

// Import stores a PEM chain (leaf first) under id.
func (s *Service) Import(ctx context.Context, id, pemText string) (Info, error) {
	if err := api.ValidateID(id); err != nil {
		return Info{}, err
	}
	chain, err := api.ParseChainPEM(pemText)
	if err != nil {
		return Info{}, err
	}
	s.issue.Lock()
	defer s.issue.Unlock()
	if err := s.store.Put(id, api.EncodeChain(chain)); err != nil {
		return Info{}, err
	}
	s.log.Info("certificate imported", "cert_id", id, "subject", chain[0].Subject.String())
	s.wake()
	return s.Get(ctx, id)
}

// Delete removes a stored certificate.
func (s *Service) Delete(ctx context.Context, id string) error {
	s.issue.Lock()
	defer s.issue.Unlock()
	if err := s.store.Delete(id); err != nil {
		return err
	}
	s.log.Info("certificate deleted", "cert_id", id)
	s.wake()
	return nil
}

func (s *Service) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}
