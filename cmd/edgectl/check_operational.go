package main

import (
	"context"
	"fmt"
	"time"

	iclient "github.com/edgev2/edgev2/identity/client"
)

// checkOperationalCert reports the DPS-issued operational certificate and
// its renewal ([provisioning.attestation] operational_cert).
func (k *checker) checkOperationalCert(ctx context.Context) {
	const name = "identity.operational-cert"
	c := k.cfg.identityd
	if c == nil || c.Provisioning.Source != "dps" || c.Provisioning.Attestation == nil || c.Provisioning.Attestation.OperationalCert == nil {
		return
	}
	if !k.up["org.edgev2.Identity1"] || k.conn == nil {
		k.add(name, statusWarning, "identityd is not running; the operational certificate cannot be checked", "start edgev2-identityd")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := iclient.New(k.conn).ProvisioningInfo(ctx)
	if err != nil {
		k.add(name, statusError, err.Error(), "grant org.edgev2.identity.read or run as root")
		return
	}
	op := info.Operational
	if op == nil || op.State == "" {
		k.add(name, statusWarning, "DPS has not issued the operational certificate yet ("+info.LastError+")",
			"wait for provisioning; `edgectl identity show` has the state")
		return
	}
	at := func(v uint64) time.Time {
		if v == 0 {
			return time.Time{}
		}
		return time.Unix(int64(v), 0).UTC()
	}
	expires, renew, retry := at(op.ExpiresAt), at(op.RenewAt), at(op.RetryAt)
	msg := fmt.Sprintf("%s (key %s, serial %s) %s, expires %s, renews at %s", op.CertID, op.KeyID,
		op.Serial, op.State, expires.Format(time.RFC3339), renew.Format(time.RFC3339))
	switch op.State {
	case "valid", "renewing":
		k.ok(name, "%s", msg)
	case "renewal-failed":
		k.add(name, statusWarning, fmt.Sprintf("%s; renewal failed (%s): %s; retrying at %s", msg, op.Failure,
			op.LastError, retry.Format(time.RFC3339)), renewalFix(op.Failure))
	default: // expired
		k.add(name, statusError, fmt.Sprintf("%s; last renewal failure (%s): %s", msg, op.Failure, op.LastError),
			renewalFix(op.Failure))
	}
}

// renewalFix is the fix for a named renewal failure.
func renewalFix(failure string) string {
	switch failure {
	case "dps-api-version-unsupported":
		return "the DPS instance does not do certificate issuance (api-version 2025-07-01-preview): use one with Azure Device Registry certificate management, or remove operational_cert"
	case "csr-refused":
		return "the enrollment's credential policy refused the request: check its key types against operational_cert.key_type and that the registration id is the CSR's subject"
	case "certificate-not-issued":
		return "link the DPS enrollment to a credential policy"
	case "certificate-for-another-key":
		return "DPS returned a certificate for a key the device did not ask for; nothing was stored; report it to the DPS operator"
	case "dps-unreachable":
		return "check the network path to DPS; identityd retries with back-off and keeps the current certificate"
	}
	return "see the identityd journal (journalctl -u edgev2-identityd)"
}
