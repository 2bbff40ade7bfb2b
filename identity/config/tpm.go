package config

import (
	"fmt"
	"strconv"
	"strings"
)

// TPMConfig is identityd.toml's [tpm]: which TPM DPS TPM attestation uses.
type TPMConfig struct {
	// Device is the TPM character device; default /dev/tpmrm0 (the
	// kernel resource manager).
	Device string `toml:"device,omitempty"`
	// Address is a raw TPM command socket (swtpm --server), host:port,
	// instead of Device: tests and labs.
	Address string `toml:"address,omitempty"`
	// AuthKeyHandle is the persistent handle of the imported DPS
	// identity key, "0x81000100" by default (the Azure IoT SDKs' and
	// aziot-tpmd's).
	AuthKeyHandle string `toml:"auth_key_handle,omitempty"`
	// EKTemplate is the template the endorsement key is created from when
	// the TPM has none persisted at 0x81010001: "tcg" (TCG EK Credential
	// Profile, what makers certify) or "azure-sdk" (the Azure IoT SDKs'
	// own, for fleets enrolled with Azure's tooling); unset, the one
	// whose key the TPM's EK certificate holds. The EK is then persisted
	// at 0x81010001 (owner auth), so the registration id stays put.
	EKTemplate string `toml:"ek_template,omitempty"`
	// HierarchyAuthorization holds the hierarchies' auth values when
	// someone set them (tpm2_changeauth); empty otherwise.
	HierarchyAuthorization *HierarchyAuthorization `toml:"hierarchy_authorization,omitempty" json:"-"`
}

// HierarchyAuthorization is [tpm.hierarchy_authorization] (aziot-tpmd's names).
type HierarchyAuthorization struct {
	Endorsement string `toml:"endorsement,omitempty"`
	Owner       string `toml:"owner,omitempty"`
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
	if err := checkEKTemplate(t.EKTemplate); err != nil {
		return bad("tpm.ek_template", err.Error(), `use "tcg" or "azure-sdk", or leave it out to follow the TPM's EK certificate`)
	}
	if _, err := t.AuthKeyHandleValue(); err != nil {
		return bad("tpm.auth_key_handle", err.Error(), `use a persistent owner handle such as "0x81000100"`)
	}
	return nil
}

// srkHandle is where identity/tpm keeps the storage root key
// (tpm.SRKHandle), which the DPS key must not displace.
const srkHandle = 0x81000001

// AuthKeyHandleValue is auth_key_handle as a number; 0 when not set (the
// TPM package's default then applies).
func (t *TPMConfig) AuthKeyHandleValue() (uint32, error) {
	if t.AuthKeyHandle == "" {
		return 0, nil
	}
	v, err := strconv.ParseUint(t.AuthKeyHandle, 0, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a 32-bit number", t.AuthKeyHandle)
	}
	if v < 0x81000000 || v > 0x817fffff {
		return 0, fmt.Errorf("0x%08x is not in the owner's persistent range 0x81000000-0x817fffff", v)
	}
	if v == srkHandle {
		return 0, fmt.Errorf("0x%08x is the storage root key's handle", v)
	}
	return uint32(v), nil
}

// checkEKTemplate accepts the names internal/tpm/ek.ParseTemplate knows,
// without linking the TPM stack into the programs that only read this
// file; a test in identity keeps the two in step.
func checkEKTemplate(s string) error {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "auto", "tcg", "azure-sdk":
		return nil
	}
	return fmt.Errorf("%q is not an EK template; use \"tcg\" (TCG EK Credential Profile, what TPM makers certify) or \"azure-sdk\" (the Azure IoT SDKs' template, for fleets enrolled with Azure's tooling)", s)
}
