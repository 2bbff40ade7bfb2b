package tpm

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/tpm/ek"
)

// EKStatus is the endorsement key DPS TPM attestation uses (identityd,
// the Azure IoT SDKs), its registration id, and what would change it.
type EKStatus struct {
	Key      *ek.Key
	ID       string
	Template ek.Template // the configured ek_template (ek.Auto: follow the certificate)
	// CertID is the id of the TCG EK with the certificate's key, when
	// the certificate is not this EK's; "" otherwise.
	CertID string
	// Problems say why the id may not be the one an enrollment holds or
	// may change later, each with its fix; none when it is settled.
	Problems []EKProblem
}

// EKProblem is one reason the registration id is not settled.
type EKProblem struct{ Message, Fix string }

// EKStatus finds the EK as identityd would with template tmpl (see
// ek.Find) and, with persist, persists a created one at 0x81010001; it
// identifies a persisted EK's template by recreating the candidates.
// Transient keys are flushed before it returns.
func (t *TPM) EKStatus(ctx context.Context, tmpl ek.Template, persist bool) (*EKStatus, error) {
	if err := t.lock(ctx); err != nil {
		return nil, err
	}
	defer t.mu.Unlock()
	opts := ek.Options{Template: tmpl, Persist: persist, Identify: true, EndorsementAuth: t.cfg.EndorsementAuth, OwnerAuth: t.cfg.OwnerAuth}
	k, err := ek.Find(t.t, opts)
	if err != nil {
		return nil, t.ekError(err)
	}
	if !k.Persistent {
		t.flush(k.Handle)
	}
	st := &EKStatus{Key: k, ID: k.RegistrationID(), Template: tmpl}
	if k.Cert == ek.CertDiffers && k.CertKey != nil {
		pub := ek.TCG.Public()
		pub.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: k.CertKey.N.FillBytes(make([]byte, 256))})
		st.CertID = ek.RegistrationID(tpm2.Marshal(tpm2.New2B(pub)))
	}
	add := func(fix, format string, args ...any) {
		st.Problems = append(st.Problems, EKProblem{Message: fmt.Sprintf(format, args...), Fix: fix})
	}
	intended := tmpl != ek.Auto && k.Identified && k.Template == tmpl
	switch {
	case k.Persistent:
		if k.Cert == ek.CertDiffers && !intended {
			add("enroll the registration id `edgectl tpm ek` prints with the EK it reports, or remove the persisted EK (tpm2_evictcontrol -C o -c 0x81010001) so the certified one is created and persisted in its place",
				"the EK persisted at 0x81010001 (template %s) is not the key of the TPM's EK certificate (NV 0x01c00002): it gives registration id %s, while enrollments made from the certificate hold %s", templateName(k), st.ID, st.CertID)
		}
		if tmpl != ek.Auto && k.Identified && k.Template != tmpl {
			add("remove ek_template, or evict 0x81010001 (tpm2_evictcontrol -C o -c 0x81010001) if the enrollment holds the "+tmpl.String()+" EK's id",
				"ek_template = %q has no effect: 0x81010001 already holds the %s EK, which identityd and the Azure IoT SDKs use", tmpl.String(), k.Template)
		}
	default:
		why := "identityd persists it there when it provisions"
		if k.PersistErr != nil {
			why = "persisting it failed: " + t.ekError(k.PersistErr).Error()
		}
		if k.Template != ek.AzureSDK {
			az, err := ek.Find(t.t, ek.Options{Template: ek.AzureSDK, EndorsementAuth: t.cfg.EndorsementAuth})
			if err != nil {
				return nil, t.ekError(err)
			}
			t.flush(az.Handle)
			add("persist it now: edgectl tpm ek --persist"+templateFlag(tmpl),
				"no EK is persisted at 0x81010001 (%s): the registration id is %s from the %s template, but an Azure IoT SDK tool run first would persist its own EK there and the id would become %s", why, st.ID, k.Template, az.RegistrationID())
		} else {
			add("persist it now: edgectl tpm ek --persist"+templateFlag(tmpl),
				"no EK is persisted at 0x81010001 (%s): a tool that persists the TCG EK there first (tpm2_createek, a maker's provisioning) changes the registration id", why)
		}
		if k.Cert == ek.CertDiffers && !intended {
			add(`set ek_template to the template the enrollment was made with ("tcg" or "azure-sdk")`,
				"the TPM's EK certificate certifies neither the tcg nor the azure-sdk EK; registration id %s is from the %s template, enrollments made from the certificate hold %s", st.ID, k.Template, st.CertID)
		}
	}
	return st, nil
}

func templateName(k *ek.Key) string {
	if !k.Identified {
		return "unknown: neither tcg nor azure-sdk reproduces it"
	}
	return k.Template.String()
}

func templateFlag(tmpl ek.Template) string {
	if tmpl == ek.Auto {
		return ""
	}
	return " --template " + tmpl.String()
}

// ekError maps a failed ek step to a message naming the fix.
func (t *TPM) ekError(err error) error {
	var se *ek.StepError
	if errors.As(err, &se) {
		return t.tpmError(se.Err, se.What, hierarchy(se.Hierarchy))
	}
	return fault.Wrap(fault.Failed, err, "%s: find the endorsement key: %v", t.Where(), err)
}
