package identity

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/edgev2/edgev2/identity/config"
	"github.com/edgev2/edgev2/identity/connstr"
	"github.com/edgev2/edgev2/identity/dps"
	"github.com/edgev2/edgev2/identity/hub"
	"github.com/edgev2/edgev2/identity/sas"
	"github.com/edgev2/edgev2/internal/atomicfile"
	"github.com/edgev2/edgev2/internal/fault"
)

// connStringKeyID is where a connection string's key is kept in Keys.
const connStringKeyID = config.ConnStringKeyID

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
	return &Service{cfg: cfg, keys: keys, certs: certs, log: log, now: time.Now, sleep: sleepCtx,
		state: StateUnprovisioned, modules: map[string]Module{}, kick: make(chan struct{}, 1)}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// cache is the provisioning result and module identities on disk, so the
// device boots and serves identities with the cloud away.
type cache struct {
	Version     int               `json:"version"`
	Fingerprint string            `json:"fingerprint"`
	Device      *Device           `json:"device"`
	Info        ProvisioningInfo  `json:"info"`
	Modules     map[string]Module `json:"modules"`
	// Operational is the DPS-issued operational certificate's state.
	Operational *OperationalStatus `json:"operational,omitempty"`
}

func (s *Service) cachePath() string { return filepath.Join(s.cfg.Homedir, "identity.json") }

func (s *Service) loadCache() {
	data, err := os.ReadFile(s.cachePath())
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("cannot read the identity cache; provisioning again", "err", err)
		}
		return
	}
	var c cache
	if err := json.Unmarshal(data, &c); err != nil || c.Version != 1 || c.Device == nil {
		s.log.Warn("identity cache is unreadable; provisioning again", "err", err)
		return
	}
	if c.Fingerprint != s.cfg.Fingerprint() {
		s.log.Info("provisioning settings changed since the cache was written; provisioning again")
		return
	}
	s.mu.Lock()
	s.dev, s.info, s.state, s.fromCache = c.Device, c.Info, StateProvisioned, true
	if s.operationalCert() != nil && c.Operational != nil {
		s.op = c.Operational
		if s.op.State == OpRenewing { // a renewal was in flight when the service stopped: it starts over
			s.op.State, s.op.RetryAt = OpValid, time.Time{}
		}
	}
	if c.Modules != nil {
		s.modules = c.Modules
	}
	s.mu.Unlock()
	s.log.Info("identity served from cache", "hub", c.Device.HubHostname, "device_id", c.Device.DeviceID, "modules", len(c.Modules))
}

// saveCacheLocked writes the cache atomically; s.mu is held.
func (s *Service) saveCacheLocked() error {
	if err := os.MkdirAll(s.cfg.Homedir, 0o700); err != nil {
		return err
	}
	var c cache
	c.Version, c.Fingerprint, c.Device, c.Info, c.Modules, c.Operational = 1, s.cfg.Fingerprint(), s.dev, s.info, s.modules, s.op
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(s.cachePath(), data, 0o600)
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

// Reprovision drops the cache and provisions again now.
func (s *Service) Reprovision(ctx context.Context) error {
	if s.cfg.Provisioning.Source == "none" {
		return fault.New(fault.InvalidArgs, "provisioning source is none; configure [provisioning] first")
	}
	s.mu.Lock()
	s.fromCache = false
	if err := os.Remove(s.cachePath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.mu.Unlock()
		return fmt.Errorf("drop the identity cache: %w", err)
	}
	s.mu.Unlock()
	err := s.provision(ctx)
	if err != nil {
		select { // let Run keep retrying
		case s.kick <- struct{}{}:
		default:
		}
	}
	return err
}

// provision runs one provisioning attempt and records the outcome.
func (s *Service) provision(ctx context.Context) error {
	s.prov.Lock()
	defer s.prov.Unlock()
	s.setState(StateProvisioning, "")
	dev, info, err := s.provisionOnce(ctx)
	if err != nil {
		s.setState(StateFailed, fault.Message(err))
		s.log.Error("provisioning failed", "source", s.cfg.Provisioning.Source, "err", err)
		return err
	}
	s.mu.Lock()
	otherDevice := s.dev == nil || s.dev.HubHostname != dev.HubHostname || s.dev.DeviceID != dev.DeviceID
	if otherDevice {
		s.modules = map[string]Module{} // another device: its modules are not ours
	}
	s.dev, s.info, s.fromCache = &dev, info, false
	if s.nextOp != nil {
		s.op, s.nextOp, s.failedRenewals = s.nextOp, nil, 0
	}
	err = s.saveCacheLocked()
	s.mu.Unlock()
	if otherDevice {
		s.revokeModuleSigner("provisioned as another device")
	}
	if err != nil {
		s.log.Error("cannot write the identity cache", "err", err)
	}
	s.log.Info("provisioned", "source", info.Source, "method", info.Method, "hub", dev.HubHostname, "device_id", dev.DeviceID, "substatus", info.Substatus)
	s.setState(StateProvisioned, "")
	return nil
}

func (s *Service) provisionOnce(ctx context.Context) (Device, ProvisioningInfo, error) {
	p := s.cfg.Provisioning
	info := ProvisioningInfo{Source: p.Source, ProvisionedAt: s.now()}
	switch p.Source {
	case "manual":
		if p.ConnectionString != "" {
			cs, err := connstr.Parse(p.ConnectionString)
			if err != nil {
				return Device{}, info, err
			}
			err = s.keys.CreateKey(ctx, connStringKeyID, "sign", cs.SharedAccessKey)
			if fault.Is(err, fault.AlreadyExists) {
				// The operator put a new key in the connection string: replace the old one.
				if err = s.keys.DeleteKey(ctx, connStringKeyID); err == nil {
					err = s.keys.CreateKey(ctx, connStringKeyID, "sign", cs.SharedAccessKey)
				}
			}
			if err != nil {
				return Device{}, info, fmt.Errorf("import the connection string's key: %w", err)
			}
			info.Method = "sas"
			return Device{HubHostname: cs.HostName, DeviceID: cs.DeviceID, GatewayHostname: cs.GatewayHostName, AuthType: "sas", KeyID: connStringKeyID}, info, nil
		}
		a := p.Authentication
		info.Method = a.Method
		dev := Device{HubHostname: p.IoTHubHostname, DeviceID: p.DeviceID, GatewayHostname: p.GatewayHostname, AuthType: a.Method, KeyID: a.DeviceIDPK}
		if a.Method == "x509" {
			dev.CertID = a.DeviceIDCert
			if _, err := s.certs.Ensure(ctx, a.DeviceIDCert); err != nil {
				return Device{}, info, fmt.Errorf("device certificate %q: %w", a.DeviceIDCert, err)
			}
		}
		return dev, info, nil
	case "dps":
		return s.provisionDPS(ctx, info)
	}
	return Device{}, info, fault.New(fault.InvalidArgs, "provisioning source is none")
}

func (s *Service) provisionDPS(ctx context.Context, info ProvisioningInfo) (Device, ProvisioningInfo, error) {
	p := s.cfg.Provisioning
	a := p.Attestation
	info.Method, info.Endpoint, info.IDScope = a.Method, p.GlobalEndpoint, p.IDScope
	anchors, err := s.trustAnchors(ctx)
	if err != nil {
		return Device{}, info, err
	}
	cfg := dps.Config{Endpoint: p.GlobalEndpoint, IDScope: p.IDScope, APIVersion: s.cfg.Cloud.DPSAPIVersion,
		TrustAnchors: anchors, Timeout: s.cfg.Timeout(), Sleep: s.sleep, Now: s.now}
	if p.Payload != "" {
		cfg.Payload = json.RawMessage(p.Payload)
	}
	dev := Device{}
	switch a.Method {
	case "symmetric_key":
		cfg.RegistrationID = a.RegistrationID
		dev = Device{AuthType: "sas", KeyID: a.SymmetricKey}
		if a.GroupKey != "" {
			// Group enrollment: the device key is HMAC(group key, registration id).
			dev.KeyID, dev.DerivedFrom = a.GroupKey, a.RegistrationID
		}
		cfg.SAS = s.deviceSigner(dev)
	case "x509":
		tc, chain, err := s.tlsIdentity(ctx, a.IdentityCert, a.IdentityPK, true)
		if err != nil {
			return Device{}, info, err
		}
		cfg.ClientCert = tc
		cfg.RegistrationID = a.RegistrationID
		if cfg.RegistrationID == "" {
			cfg.RegistrationID = chain[0].Subject.CommonName // DPS: the leaf's CN
		}
		dev = Device{AuthType: "x509", KeyID: a.IdentityPK, CertID: a.IdentityCert}
	case "tpm":
		done, err := s.tpmAttestation(ctx, &cfg)
		if err != nil {
			return Device{}, info, err
		}
		defer done()
		dev = Device{AuthType: "sas", TPM: true}
	}
	info.RegistrationID = cfg.RegistrationID
	oc := a.OperationalCert
	var opKeyID string
	var opSigner crypto.Signer
	if oc != nil {
		if opKeyID, opSigner, cfg.CSR, err = s.operationalCSR(ctx, oc, cfg.RegistrationID); err != nil {
			return Device{}, info, err
		}
		if cfg.APIVersion == "" {
			cfg.APIVersion = dps.APIVersionCSR
		}
	}
	if s.TuneDPS != nil {
		s.TuneDPS(&cfg)
	}
	res, err := dps.Register(ctx, cfg)
	if err != nil {
		return Device{}, info, err
	}
	if oc != nil {
		st, err := s.storeOperational(ctx, oc, opKeyID, opSigner, res)
		if err != nil {
			return Device{}, info, err
		}
		s.nextOp = st
		// From now on the hub knows the device by this certificate.
		dev = Device{AuthType: "x509", KeyID: opKeyID, CertID: oc.CertID}
	}
	dev.HubHostname, dev.DeviceID = res.AssignedHub, res.DeviceID
	info.Substatus = res.Substatus
	return dev, info, nil
}

// deviceSigner signs the device's SAS tokens in Keys.
func (s *Service) deviceSigner(dev Device) sas.Signer {
	if dev.TPM {
		return s.tpmSigner()
	}
	return func(ctx context.Context, data []byte) ([]byte, error) {
		if dev.DerivedFrom != "" {
			return s.keys.SignDerived(ctx, dev.KeyID, []byte(dev.DerivedFrom), data)
		}
		return s.keys.Sign(ctx, dev.KeyID, data)
	}
}

// moduleSigner signs a module's SAS tokens with its primary key, derived
// from the master key and the module's generation.
func (s *Service) moduleSigner(m Module) sas.Signer {
	return func(ctx context.Context, data []byte) ([]byte, error) {
		return s.keys.SignDerived(ctx, s.cfg.MasterKey, moduleDerivation(m, "primary"), data)
	}
}

func moduleDerivation(m Module, which string) []byte {
	return []byte(m.ModuleID + ":" + m.GenerationID + ":" + which)
}

func (s *Service) tlsIdentity(ctx context.Context, certID, keyID string, ensure bool) (*tls.Certificate, []*x509.Certificate, error) {
	get := s.certs.Get
	if ensure {
		get = s.certs.Ensure
	}
	chain, err := get(ctx, certID)
	if err != nil {
		return nil, nil, fmt.Errorf("identity certificate %q: %w", certID, err)
	}
	signer, err := s.keys.Signer(ctx, keyID)
	if err != nil {
		return nil, nil, fmt.Errorf("identity key %q: %w", keyID, err)
	}
	tc := &tls.Certificate{PrivateKey: signer, Leaf: chain[0]}
	for _, c := range chain {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	return tc, chain, nil
}

func (s *Service) trustAnchors(ctx context.Context) (*x509.CertPool, error) {
	if len(s.cfg.Cloud.TrustedCerts) == 0 {
		return nil, nil
	}
	pool := x509.NewCertPool()
	for _, id := range s.cfg.Cloud.TrustedCerts {
		chain, err := s.certs.Get(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("trust anchor %q: %w", id, err)
		}
		for _, c := range chain {
			pool.AddCert(c)
		}
	}
	return pool, nil
}

// hubClient talks to the device's hub with the device's credential.
func (s *Service) hubClient(ctx context.Context) (*hub.Client, Device, error) {
	dev, err := s.Device()
	if err != nil {
		return nil, Device{}, err
	}
	anchors, err := s.trustAnchors(ctx)
	if err != nil {
		return nil, dev, err
	}
	cfg := hub.Config{HubHost: dev.HubHostname, DeviceID: dev.DeviceID, TrustAnchors: anchors,
		Timeout: s.cfg.Timeout(), Now: s.now, TokenTTL: s.cfg.TokenTTL()}
	if dev.AuthType == "x509" {
		keyID, err := s.operationalKey(ctx, dev)
		if err != nil {
			return nil, dev, err
		}
		if cfg.ClientCert, _, err = s.tlsIdentity(ctx, dev.CertID, keyID, false); err != nil {
			return nil, dev, err
		}
	} else {
		cfg.SAS = s.deviceSigner(dev)
	}
	if s.TuneHub != nil {
		s.TuneHub(&cfg)
	}
	c, err := hub.New(cfg)
	return c, dev, err
}

// GetSasToken makes a token for the device ("") or a module.
func (s *Service) GetSasToken(ctx context.Context, moduleID string, ttl time.Duration) (string, error) {
	if ttl < time.Second || ttl > 24*time.Hour {
		return "", fault.New(fault.InvalidArgs, "ttl must be 1..86400 seconds, got %d", int64(ttl/time.Second))
	}
	dev, err := s.Device()
	if err != nil {
		return "", err
	}
	expiry := s.now().Add(ttl)
	if moduleID == "" {
		if dev.AuthType != "sas" {
			return "", fault.New(fault.InvalidArgs, "device %q authenticates with X.509; it has no SAS key to sign a token with", dev.DeviceID)
		}
		return sas.Token(ctx, s.deviceSigner(dev), sas.DeviceResource(dev.HubHostname, dev.DeviceID), expiry, "")
	}
	m, err := s.GetModule(ctx, moduleID)
	if err != nil {
		return "", err
	}
	return sas.Token(ctx, s.moduleSigner(m), sas.ModuleResource(dev.HubHostname, dev.DeviceID, moduleID), expiry, "")
}

func (s *Service) putModule(m Module) {
	s.mu.Lock()
	old, had := s.modules[m.ModuleID]
	s.modules[m.ModuleID] = m
	if err := s.saveCacheLocked(); err != nil {
		s.log.Error("cannot write the identity cache", "err", err)
	}
	s.mu.Unlock()
	if had && old.GenerationID != m.GenerationID {
		s.revokeModuleSigner("module " + m.ModuleID + " has a new generation")
	}
}

// SignAsModule signs data with a module's derived primary or secondary key.
func (s *Service) SignAsModule(ctx context.Context, moduleID, key string, data []byte) ([]byte, error) {
	if key != "primary" && key != "secondary" {
		return nil, fault.New(fault.InvalidArgs, "key must be \"primary\" or \"secondary\", not %q", key)
	}
	if len(data) > 1<<20 {
		return nil, fault.New(fault.InvalidArgs, "data is %d bytes; the limit is 1 MiB", len(data))
	}
	m, err := s.GetModule(ctx, moduleID)
	if err != nil {
		return nil, err
	}
	return s.keys.SignDerived(ctx, s.cfg.MasterKey, moduleDerivation(m, key), data)
}

// CreateModule registers a module identity with derived SAS keys.
func (s *Service) CreateModule(ctx context.Context, moduleID, managedBy string) (Module, error) {
	if err := ValidateModuleID(moduleID); err != nil {
		return Module{}, err
	}
	if err := s.ensureMaster(ctx); err != nil {
		return Module{}, err
	}
	c, _, err := s.hubClient(ctx)
	if err != nil {
		return Module{}, err
	}
	created, err := c.CreateModule(ctx, moduleID, hub.Authentication{Type: "sas"}, managedBy)
	if err != nil {
		return Module{}, err
	}
	return s.registerKeys(ctx, c, created)
}

// registerKeys puts the module's derived keys into the hub and caches it.
func (s *Service) registerKeys(ctx context.Context, c *hub.Client, hm *hub.Module) (Module, error) {
	if err := s.ensureMaster(ctx); err != nil {
		return Module{}, err
	}
	m := Module{ModuleID: hm.ModuleID, GenerationID: hm.GenerationID, ETag: hm.ETag, ManagedBy: hm.ManagedBy}
	primary, err := s.keys.ExportDerived(ctx, s.cfg.MasterKey, moduleDerivation(m, "primary"))
	if err != nil {
		return Module{}, fmt.Errorf("derive the key of module %q: %w", m.ModuleID, err)
	}
	secondary, err := s.keys.ExportDerived(ctx, s.cfg.MasterKey, moduleDerivation(m, "secondary"))
	if err != nil {
		return Module{}, fmt.Errorf("derive the key of module %q: %w", m.ModuleID, err)
	}
	hm.Authentication = hub.Authentication{Type: "sas", PrimaryKey: primary, SecondaryKey: secondary}
	updated, err := c.UpdateModule(ctx, hm)
	clear(primary)
	clear(secondary)
	if err != nil {
		return Module{}, err
	}
	m.ETag, m.GenerationID = updated.ETag, updated.GenerationID
	s.putModule(m)
	s.log.Info("module identity registered", "module_id", m.ModuleID, "generation_id", m.GenerationID)
	return m, nil
}

// GetModule returns a module identity: from the cache, else from the hub.
func (s *Service) GetModule(ctx context.Context, moduleID string) (Module, error) {
	if err := ValidateModuleID(moduleID); err != nil {
		return Module{}, err
	}
	s.mu.Lock()
	m, ok := s.modules[moduleID]
	s.mu.Unlock()
	if ok {
		return m, nil
	}
	c, _, err := s.hubClient(ctx)
	if err != nil {
		return Module{}, err
	}
	hm, err := c.GetModule(ctx, moduleID)
	if err != nil {
		return Module{}, err
	}
	m = Module{ModuleID: hm.ModuleID, GenerationID: hm.GenerationID, ETag: hm.ETag, ManagedBy: hm.ManagedBy}
	s.putModule(m)
	return m, nil
}

// ListModules lists the device's modules from the hub, or from the cache
// when the hub cannot be reached.
func (s *Service) ListModules(ctx context.Context) ([]Module, error) {
	c, _, err := s.hubClient(ctx)
	if err == nil {
		var hms []*hub.Module
		if hms, err = c.ListModules(ctx); err == nil {
			out := make([]Module, 0, len(hms))
			changed := false
			s.mu.Lock()
			for _, hm := range hms {
				if hm.ModuleID == "$edgeAgent" || hm.ModuleID == "$edgeHub" {
					continue // the hub's own system modules
				}
				m := Module{ModuleID: hm.ModuleID, GenerationID: hm.GenerationID, ETag: hm.ETag, ManagedBy: hm.ManagedBy}
				if old, had := s.modules[m.ModuleID]; had && old.GenerationID != m.GenerationID {
					changed = true
				}
				s.modules[m.ModuleID] = m
				out = append(out, m)
			}
			s.saveCacheLocked()
			s.mu.Unlock()
			if changed {
				s.revokeModuleSigner("a module has a new generation in the hub")
			}
			sort.Slice(out, func(i, j int) bool { return out[i].ModuleID < out[j].ModuleID })
			return out, nil
		}
	}
	if !fault.Is(err, fault.Unavailable) {
		return nil, err
	}
	s.log.Warn("hub unreachable; listing cached module identities", "err", err)
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Module, 0, len(s.modules))
	for _, m := range s.modules {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ModuleID < out[j].ModuleID })
	return out, nil
}

// UpdateModule registers the module's keys again (and managed_by).
func (s *Service) UpdateModule(ctx context.Context, moduleID, managedBy string) (Module, error) {
	if err := ValidateModuleID(moduleID); err != nil {
		return Module{}, err
	}
	c, _, err := s.hubClient(ctx)
	if err != nil {
		return Module{}, err
	}
	hm, err := c.GetModule(ctx, moduleID)
	if err != nil {
		return Module{}, err
	}
	if managedBy != "" {
		hm.ManagedBy = managedBy
	}
	return s.registerKeys(ctx, c, hm)
}

// DeleteModule deletes a module identity from the hub and the cache.
func (s *Service) DeleteModule(ctx context.Context, moduleID string) error {
	if err := ValidateModuleID(moduleID); err != nil {
		return err
	}
	c, _, err := s.hubClient(ctx)
	if err != nil {
		return err
	}
	if err := c.DeleteModule(ctx, moduleID, "*"); err != nil && !fault.Is(err, fault.NotFound) {
		return err
	}
	s.mu.Lock()
	delete(s.modules, moduleID)
	if err := s.saveCacheLocked(); err != nil {
		s.log.Error("cannot write the identity cache", "err", err)
	}
	s.mu.Unlock()
	s.revokeModuleSigner("module " + moduleID + " deleted")
	s.log.Info("module identity deleted", "module_id", moduleID)
	return nil
}

// IdentityCertRenewed reprovisions when the certificate DPS X.509
// attestation uses was renewed, so DPS and the hub know the new one.
func (s *Service) IdentityCertRenewed(ctx context.Context, certID string) {
	p := s.cfg.Provisioning
	if p.Source == "dps" && p.Attestation != nil && p.Attestation.Method == "x509" && p.Attestation.IdentityCert == certID {
		s.log.Info("identity certificate renewed; registering again with DPS", "cert_id", certID)
		// Not Reprovision: the cached identity stays until DPS answers, so a
		// device that reboots offline meanwhile still has it.
		if err := s.provision(ctx); err != nil {
			s.log.Error("re-registration after renewal failed; retrying", "err", err)
			select {
			case s.kick <- struct{}{}:
			default:
			}
		}
	}
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
