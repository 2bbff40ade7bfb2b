package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/tpm"
	"github.com/edgev2/edgev2/internal/tpm/ek"
)

// tpmCheckTimeout bounds the TPM check: a real TPM takes seconds to make
// each RSA primary key the check compares.
const tpmCheckTimeout = 2 * time.Minute

// checkTPM reports, for DPS TPM attestation, the registration id the
// TPM's endorsement key gives and warns when it would change: an EK not
// persisted yet (another tool's persist would replace it), a persisted
// EK that is not the EK certificate's, an ek_template without effect.
func (k *checker) checkTPM(ctx context.Context) {
	const name = "tpm.registration-id"
	c := k.cfg.identityd
	if c == nil || c.Provisioning.Source != "dps" || c.Provisioning.Attestation == nil || c.Provisioning.Attestation.Method != "tpm" {
		return
	}
	tmpl, err := ek.ParseTemplate(c.TPM.EKTemplate)
	if err != nil {
		return // config.identityd said so
	}
	cfg := tpm.Config{Device: c.TPM.Device, Address: c.TPM.Address}
	if a := c.TPM.HierarchyAuthorization; a != nil {
		cfg.EndorsementAuth, cfg.OwnerAuth = []byte(a.Endorsement), []byte(a.Owner)
	}
	ctx, cancel := context.WithTimeout(ctx, tpmCheckTimeout)
	defer cancel()
	t, err := tpm.Open(ctx, cfg)
	if err != nil {
		k.add(name, statusError, fault.Message(err), "fix [tpm] device/address in identityd.toml, or give edgeid access to the TPM")
		return
	}
	defer t.Close()
	st, err := t.EKStatus(ctx, tmpl, false)
	if err != nil {
		k.add(name, statusError, fault.Message(err), "see docs/tpm.md (faults) and [tpm.hierarchy_authorization] in identityd.toml")
		return
	}
	id := st.ID
	if rid := c.Provisioning.Attestation.RegistrationID; rid != "" {
		id = fmt.Sprintf("%s (configured; the EK's own is %s)", rid, st.ID)
	}
	if len(st.Problems) == 0 {
		where := "transient"
		if st.Key.Persistent {
			where = "0x81010001"
		}
		k.ok(name, "registration id %s: EK at %s, template %s, %s", id, where, st.Key.Template, map[ek.CertState]string{
			ek.CertMatches: "the EK certificate's key", ek.CertAbsent: "no EK certificate in NV", ek.CertDiffers: "not the EK certificate's key (as ek_template asks)",
			ek.CertUnreadable: "NV 0x01c00002 holds no RSA certificate"}[st.Key.Cert])
		return
	}
	var msgs, fixes []string
	for _, p := range st.Problems {
		msgs, fixes = append(msgs, p.Message), append(fixes, p.Fix)
	}
	k.add(name, statusWarning, fmt.Sprintf("registration id %s may change: %s", id, strings.Join(msgs, "; ")), strings.Join(fixes, "; "))
}
