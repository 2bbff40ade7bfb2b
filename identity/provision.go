package identity

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/identity/config"
	"github.com/edgev2/edgev2/identity/connstr"
	"github.com/edgev2/edgev2/identity/dps"
	"github.com/edgev2/edgev2/internal/atomicfile"
)

// Provisioning: one attempt (manual or DPS) and its outcome, on demand
// (Reprovision) and when DPS's identity certificate was renewed.

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
	// Durable before provisioning: a power loss must not bring back the
	// identity the caller asked to drop.
	if err := atomicfile.SyncDir(filepath.Dir(s.cachePath())); err != nil {
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
			err = s.keys.CreateKey(ctx, config.ConnStringKeyID, "sign", cs.SharedAccessKey)
			if fault.Is(err, fault.AlreadyExists) {
				// The operator put a new key in the connection string: replace the old one.
				if err = s.keys.DeleteKey(ctx, config.ConnStringKeyID); err == nil {
					err = s.keys.CreateKey(ctx, config.ConnStringKeyID, "sign", cs.SharedAccessKey)
				}
			}
			if err != nil {
				return Device{}, info, fmt.Errorf("import the connection string's key: %w", err)
			}
			info.Method = "sas"
			return Device{HubHostname: cs.HostName, DeviceID: cs.DeviceID, GatewayHostname: cs.GatewayHostName, AuthType: "sas", KeyID: config.ConnStringKeyID}, info, nil
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
