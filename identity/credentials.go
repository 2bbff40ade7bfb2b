package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/identity/hub"
	"github.com/edgev2/edgev2/identity/sas"
)

// How identityd authenticates to the cloud: the device's and modules' SAS
// signers (in Keys or the TPM), its TLS identity, the trust anchors and
// the hub client built from them; and the SAS tokens it hands out.

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
