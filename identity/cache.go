package identity

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/edgev2/edgev2/internal/atomicfile"
)

// The identity cache: the provisioning result and the module identities
// on disk (identity.json), so the device boots and serves identities
// offline; the config fingerprint invalidates it.

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
