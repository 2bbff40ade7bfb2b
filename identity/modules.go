package identity

import (
	"context"
	"fmt"
	"sort"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/identity/hub"
)

// Module identities: registered in IoT Hub with keys derived from the
// module-key master, cached, and signed for.

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

// validateManagedBy refuses a managed_by the hub would store but identityd
// could not read back (every list of the device's modules would fail).
func validateManagedBy(managedBy string) error {
	if err := hub.CheckManagedBy(managedBy); err != nil {
		return fault.New(fault.InvalidArgs, "option managed_by: %s", fault.Message(err))
	}
	return nil
}

// CreateModule registers a module identity with derived SAS keys.
func (s *Service) CreateModule(ctx context.Context, moduleID, managedBy string) (Module, error) {
	if err := ValidateModuleID(moduleID); err != nil {
		return Module{}, err
	}
	if err := validateManagedBy(managedBy); err != nil {
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
	m := moduleOf(hm)
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

// moduleOf is the module identity the hub's record hm describes.
func moduleOf(hm *hub.Module) Module {
	return Module{ModuleID: hm.ModuleID, GenerationID: hm.GenerationID, ETag: hm.ETag, ManagedBy: hm.ManagedBy}
}

// hubModule asks the hub for moduleID's record; c is the client it asked with.
func (s *Service) hubModule(ctx context.Context, moduleID string) (c *hub.Client, hm *hub.Module, err error) {
	if c, _, err = s.hubClient(ctx); err != nil {
		return nil, nil, err
	}
	if hm, err = c.GetModule(ctx, moduleID); err != nil {
		return nil, nil, err
	}
	return c, hm, nil
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
	_, hm, err := s.hubModule(ctx, moduleID)
	if err != nil {
		return Module{}, err
	}
	m = moduleOf(hm)
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
				m := moduleOf(hm)
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
	if err := validateManagedBy(managedBy); err != nil {
		return Module{}, err
	}
	c, hm, err := s.hubModule(ctx, moduleID)
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
