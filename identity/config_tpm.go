package identity

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/google/go-tpm/tpm2"

	"github.com/edgev2/edgev2/internal/tpm"
	"github.com/edgev2/edgev2/internal/tpm/ek"
)

// TPMConfig is identityd.toml's [tpm]: which TPM DPS TPM attestation uses.
type TPMConfig struct {
	// Device is the TPM character device; default /dev/tpmrm0 (the
	// kernel resource manager).
	Device string `toml:"device"`
	// Address is a raw TPM command socket (swtpm --server), host:port,
	// instead of Device: tests and labs.
	Address string `toml:"address"`
	// AuthKeyHandle is the persistent handle of the imported DPS
	// identity key, "0x81000100" by default (the Azure IoT SDKs' and
	// aziot-tpmd's).
	AuthKeyHandle string `toml:"auth_key_handle"`
	// EKTemplate is the template the endorsement key is created from when
	// the TPM has none persisted at 0x81010001: "tcg" (TCG EK Credential
	// Profile, what makers certify) or "azure-sdk" (the Azure IoT SDKs'
	// own, for fleets enrolled with Azure's tooling); unset, the one
	// whose key the TPM's EK certificate holds. The EK is then persisted
	// at 0x81010001 (owner auth), so the registration id stays put.
	EKTemplate string `toml:"ek_template"`
	// HierarchyAuthorization holds the hierarchies' auth values when
	// someone set them (tpm2_changeauth); empty otherwise.
	HierarchyAuthorization *HierarchyAuthorization `toml:"hierarchy_authorization" json:"-"`
}

// HierarchyAuthorization is [tpm.hierarchy_authorization] (aziot-tpmd's names).
type HierarchyAuthorization struct {
	Endorsement string `toml:"endorsement"`
	Owner       string `toml:"owner"`
}

func (t *TPMConfig) validate(path string) error {
	bad := func(key, problem, fix string) error {
		return &ConfigError{File: path, Key: key, Problem: problem, Fix: fix}
	}
	if t.Device != "" && t.Address != "" {
		return bad("tpm.address", "both device and address are set", "use device for a real TPM, address for a TPM command socket")
	}
	if t.Device != "" && !strings.HasPrefix(t.Device, "/") {
		return bad("tpm.device", fmt.Sprintf("%q is not an absolute path", t.Device), `use "/dev/tpmrm0"`)
	}
	if t.Address != "" {
		if _, port, ok := strings.Cut(t.Address, ":"); !ok || port == "" {
			return bad("tpm.address", fmt.Sprintf("%q is not host:port", t.Address), `use "127.0.0.1:2321"`)
		}
	}
	if _, err := ek.ParseTemplate(t.EKTemplate); err != nil {
		return bad("tpm.ek_template", err.Error(), `use "tcg" or "azure-sdk", or leave it out to follow the TPM's EK certificate`)
	}
	if _, err := t.authKeyHandle(); err != nil {
		return bad("tpm.auth_key_handle", err.Error(), `use a persistent owner handle such as "0x81000100"`)
	}
	return nil
}

func (t *TPMConfig) authKeyHandle() (tpm2.TPMHandle, error) {
	if t.AuthKeyHandle == "" {
		return tpm.DefaultAuthKeyHandle, nil
	}
	v, err := strconv.ParseUint(t.AuthKeyHandle, 0, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a 32-bit number", t.AuthKeyHandle)
	}
	if v < 0x81000000 || v > 0x817fffff {
		return 0, fmt.Errorf("0x%08x is not in the owner's persistent range 0x81000000-0x817fffff", v)
	}
	if h := tpm2.TPMHandle(v); h == tpm.SRKHandle {
		return 0, fmt.Errorf("0x%08x is the storage root key's handle", v)
	}
	return tpm2.TPMHandle(v), nil
}

// tpmConfig is the identity/tpm configuration.
func (t *TPMConfig) tpmConfig() tpm.Config {
	h, _ := t.authKeyHandle()
	tmpl, _ := ek.ParseTemplate(t.EKTemplate)
	c := tpm.Config{Device: t.Device, Address: t.Address, AuthKeyHandle: h, EKTemplate: tmpl}
	if a := t.HierarchyAuthorization; a != nil {
		c.EndorsementAuth, c.OwnerAuth = []byte(a.Endorsement), []byte(a.Owner)
	}
	return c
}
