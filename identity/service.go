package identity

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/identity/config"
	"github.com/edgev2/edgev2/identity/dps"
	"github.com/edgev2/edgev2/identity/hub"
	"github.com/edgev2/edgev2/internal/cloudhttp"
)

// Service provisions the device and manages module identities.
type Service struct {
	cfg   *config.Config
	keys  Keys
	certs Certs
	log   *slog.Logger
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error

	// OnChange is called after the state or the device identity changed.
	OnChange func()
	// Sessions opens the module signer's Keys sessions (signer.go); nil:
	// OpenModuleSigner is NotSupported.
	Sessions SessionOpener
	// TuneDPS and TuneHub let tests adjust the cloud clients.
	TuneDPS func(*dps.Config)
	TuneHub func(*hub.Config)

	mu        sync.Mutex
	state     State
	lastErr   string
	fromCache bool
	dev       *Device
	info      ProvisioningInfo
	modules   map[string]Module

	prov sync.Mutex // one provisioning at a time
	kick chan struct{}

	masterMu    sync.Mutex
	masterReady bool

	tpmMu sync.Mutex // one TPM connection at a time

	signerMu sync.Mutex
	signer   *os.File // identityd's duplicate of the module signer handed out, to revoke it

	op             *OperationalStatus // the operational certificate (s.mu)
	nextOp         *OperationalStatus // made by provisionDPS, taken on success (s.prov)
	failedRenewals int                // consecutive, for the back-off (s.mu)
}

// NewService makes the service; Start loads the cache and provisions.
func NewService(cfg *config.Config, keys Keys, certs Certs, log *slog.Logger) *Service {
	return &Service{cfg: cfg, keys: keys, certs: certs, log: log, now: time.Now, sleep: cloudhttp.Sleep,
		state: StateUnprovisioned, modules: map[string]Module{}, kick: make(chan struct{}, 1)}
}

// Start loads the cache and makes the master key. It does not contact the
// cloud: Run does, in the background.
func (s *Service) Start(ctx context.Context) {
	if err := os.MkdirAll(s.cfg.Homedir, 0o700); err != nil {
		s.log.Error("cannot create the state directory", "dir", s.cfg.Homedir, "err", err)
	}
	s.loadCache()
	if err := s.ensureMaster(ctx); err != nil {
		s.log.Warn("cannot make the module master key yet; retrying on first use", "key_id", s.cfg.MasterKey, "err", err)
	}
}

// ensureMaster makes the module master key (usage derive) if missing; a
// failure (Keys not up yet) is retried on the next use.
func (s *Service) ensureMaster(ctx context.Context) error {
	s.masterMu.Lock()
	defer s.masterMu.Unlock()
	if s.masterReady {
		return nil
	}
	if err := s.keys.CreateKey(ctx, s.cfg.MasterKey, "derive", nil); err != nil {
		return fmt.Errorf("module master key %q: %w", s.cfg.MasterKey, err)
	}
	s.masterReady = true
	return nil
}

// Run provisions until it succeeds, retrying with capped back-off, and then
// again whenever Reprovision or an identity certificate renewal asks.
func (s *Service) Run(ctx context.Context) {
	delay := time.Second
	for {
		st, _ := s.State()
		if st != StateProvisioned && s.cfg.Provisioning.Source != "none" {
			if err := s.provision(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				s.log.Warn("provisioning failed; retrying", "in", delay, "err", err)
				if s.sleep(ctx, delay) != nil {
					return
				}
				delay = min(delay*2, max(s.cfg.RetryMax(), time.Second))
				continue
			}
			delay = time.Second
		}
		var renew <-chan time.Time
		var timer *time.Timer
		if at := s.nextRenewal(); !at.IsZero() {
			timer = time.NewTimer(max(at.Sub(s.now()), 0))
			renew = timer.C
		}
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return
		case <-s.kick:
		case <-renew:
			s.renewOperational(ctx)
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// State returns the state and the last error.
func (s *Service) State() (State, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state, s.lastErr
}

func (s *Service) setState(st State, errMsg string) {
	s.mu.Lock()
	s.state, s.lastErr = st, errMsg
	s.mu.Unlock()
	if s.OnChange != nil {
		s.OnChange()
	}
}

// Source is the configured provisioning source.
func (s *Service) Source() string { return s.cfg.Provisioning.Source }

// Device returns the device identity; fault.NotFound until provisioned.
func (s *Service) Device() (Device, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dev == nil {
		if s.lastErr != "" {
			return Device{}, fault.New(fault.NotFound, "the device is not provisioned (%s): %s", s.state, s.lastErr)
		}
		return Device{}, fault.New(fault.NotFound, "the device is not provisioned (%s)", s.state)
	}
	return *s.dev, nil
}

// Info returns the provisioning information.
func (s *Service) Info() (ProvisioningInfo, bool, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	info := s.info
	if info.Source == "" {
		info.Source = s.cfg.Provisioning.Source
	}
	return info, s.fromCache, s.lastErr
}

// CallerPrincipal maps a uid to its [[principal]].
func (s *Service) CallerPrincipal(uid uint32) (config.Principal, bool) {
	for _, p := range s.cfg.Principals {
		if p.UID == uid {
			return p, true
		}
	}
	return config.Principal{}, false
}
