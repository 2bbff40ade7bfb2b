package identity

import (
	"context"
	"encoding/base64"
	"fmt"

	"github.com/google/go-tpm/tpm2"

	"github.com/edgev2/edgev2/identity/config"
	"github.com/edgev2/edgev2/identity/dps"
	"github.com/edgev2/edgev2/identity/sas"
	"github.com/edgev2/edgev2/internal/tpm"
	tpmek "github.com/edgev2/edgev2/internal/tpm/ek"
)

// tpmConfig is the identity/tpm configuration of identityd.toml's [tpm]
// (checked by the parser).
func tpmConfig(t *config.TPMConfig) tpm.Config {
	h, _ := t.AuthKeyHandleValue()
	tmpl, _ := tpmek.ParseTemplate(t.EKTemplate)
	c := tpm.Config{Device: t.Device, Address: t.Address, AuthKeyHandle: tpm2.TPMHandle(h), EKTemplate: tmpl}
	if c.AuthKeyHandle == 0 {
		c.AuthKeyHandle = tpm.DefaultAuthKeyHandle
	}
	if a := t.HierarchyAuthorization; a != nil {
		c.EndorsementAuth, c.OwnerAuth = []byte(a.Endorsement), []byte(a.Owner)
	}
	return c
}

// openTPM opens the configured TPM. Connections are not shared: a raw
// command socket (swtpm) serves one client at a time, so each use opens,
// works and closes, one at a time.
func (s *Service) openTPM(ctx context.Context) (*tpm.TPM, func(), error) {
	s.tpmMu.Lock()
	tp, err := tpm.Open(ctx, tpmConfig(&s.cfg.TPM))
	if err != nil {
		s.tpmMu.Unlock()
		return nil, nil, err
	}
	return tp, func() { tp.Close(); s.tpmMu.Unlock() }, nil
}

// tpmAttestation prepares DPS TPM attestation: the EK and SRK to send,
// the registration id (configured, else derived from the EK as the Azure
// SDKs do), import of DPS's authenticationKey and SAS signing in the TPM.
// done releases the TPM.
func (s *Service) tpmAttestation(ctx context.Context, cfg *dps.Config) (done func(), err error) {
	tp, release, err := s.openTPM(ctx)
	if err != nil {
		return nil, err
	}
	// Not done: "return nil, err" sets done to nil before this runs.
	defer func() {
		if err != nil {
			release()
		}
	}()
	ek, err := tp.ReadEKPublic(ctx)
	if err != nil {
		return nil, err
	}
	srk, err := tp.EnsureSRK(ctx)
	if err != nil {
		return nil, err
	}
	cfg.RegistrationID = s.cfg.Provisioning.Attestation.RegistrationID
	if cfg.RegistrationID == "" {
		cfg.RegistrationID = tpm.RegistrationID(ek.Marshalled)
	}
	// The EK is public; enrolling the device needs exactly these values.
	s.log.Info("DPS TPM attestation", "tpm", tp.Config().Where(), "registration_id", cfg.RegistrationID,
		"ek_handle", ekHandle(ek.EK), "ek_template", ekTemplate(ek.EK), "ek_certificate", string(ek.EK.Cert),
		"endorsement_key", base64.StdEncoding.EncodeToString(ek.Marshalled))
	if ek.EK.Persisted {
		s.log.Info("endorsement key persisted at 0x81010001, so the registration id stays the same for identityd and other tools", "ek_template", ekTemplate(ek.EK))
	}
	if ek.EK.PersistErr != nil {
		s.log.Warn("endorsement key left transient: it could not be persisted at 0x81010001; a tool that persists another EK there (e.g. an Azure IoT SDK) changes the registration id; set [tpm.hierarchy_authorization] owner or persist it with edgectl tpm ek --persist",
			"error", ek.EK.PersistErr.Error())
	}
	// With ek_template set, the operator chose a key other than the
	// certificate's on purpose; edgectl check still reports it.
	if ek.EK.Cert == tpmek.CertDiffers && tp.Config().EKTemplate == tpmek.Auto {
		s.log.Warn("the endorsement key is not the one in the TPM's EK certificate (NV 0x01c00002): enrollments made from the certificate hold another registration id; see edgectl tpm ek",
			"ek_handle", ekHandle(ek.EK), "ek_template", ekTemplate(ek.EK))
	}
	cfg.TPM = &dps.TPM{EndorsementKey: ek.Marshalled, StorageRootKey: srk.Marshalled, Import: func(ctx context.Context, blob []byte) error {
		if err := tp.ImportAuthKey(ctx, blob); err != nil {
			return err
		}
		s.log.Info("DPS authentication key imported into the TPM", "registration_id", cfg.RegistrationID, "handle", fmt.Sprintf("0x%08x", uint32(tp.Config().AuthKeyHandle)))
		return nil
	}}
	cfg.SAS = func(ctx context.Context, data []byte) ([]byte, error) { return tp.Sign(ctx, data) }
	return release, nil
}

// tpmSigner signs the device's SAS tokens with the DPS key in the TPM.
func (s *Service) tpmSigner() sas.Signer {
	return func(ctx context.Context, data []byte) ([]byte, error) {
		tp, done, err := s.openTPM(ctx)
		if err != nil {
			return nil, err
		}
		defer done()
		return tp.Sign(ctx, data)
	}
}

func ekHandle(k *tpmek.Key) string {
	if k.Persistent {
		return fmt.Sprintf("0x%08x", uint32(k.Handle))
	}
	return "transient"
}

func ekTemplate(k *tpmek.Key) string {
	if !k.Identified {
		return "as persisted (not rechecked)"
	}
	return k.Template.String()
}
