package tpm

import "github.com/edgev2/edgev2/fault"

// Fixes are the remedies TPM errors name, in the terms of the program that
// opened the TPM: identityd's config file or edgectl's flags. Each message
// is a format; the arguments are listed with it.
type Fixes struct {
	SocketAbsent string // where, reason
	DeviceAbsent string // where
	Permission   string // where
	OpenFailed   string // where, reason
	NotATPM      string // where, what, reason: a failure without a TPM response code
	Lockout      string // where, what
	// HierarchyAuth: where, what, hierarchy, response code, hierarchy's
	// first letter (tpm2_changeauth -c).
	HierarchyAuth string
	// KeyAuth reports a refused key authorization as NotAuthorized, and
	// OutOfRoom a full TPM as such; without them they are Other failures.
	KeyAuth, OutOfRoom bool
	// Other is the kind of any other TPM response code.
	Other fault.Kind
}

// DaemonFixes name identityd's settings (identityd.toml); they are what
// Open uses when Config.Fixes is nil.
var DaemonFixes = Fixes{
	SocketAbsent:  "%s is absent: %v; start the TPM (e.g. swtpm socket --server type=tcp,port=...) or fix [tpm] address in identityd.toml",
	DeviceAbsent:  "%s is absent: the device does not exist; this machine has no TPM 2.0 enabled (turn it on in the firmware) or the kernel driver is not loaded (modprobe tpm_crb or tpm_tis), or set [tpm] device/address in identityd.toml",
	Permission:    "%s: permission denied; identityd's user must be in the group owning it (tss): usermod -aG tss edgeid",
	OpenFailed:    "%s cannot be opened: %v; check the device or set [tpm] device/address in identityd.toml",
	NotATPM:       "%s: %s: %v (is it a TPM 2.0? check [tpm] in identityd.toml)",
	Lockout:       "%s: %s: the TPM is in dictionary-attack lockout (TPM_RC_LOCKOUT) after too many wrong authorization values; wait for its recovery time, or reset it with the lockout auth: tpm2_dictionarylockout --clear-lockout",
	HierarchyAuth: "%[1]s: %[2]s: the TPM refused the %[3]s hierarchy's authorization (%[4]s); set [tpm.hierarchy_authorization] %[3]s in identityd.toml to its auth value, or clear it: tpm2_changeauth -c %[5]s -p <current>",
	Other:         fault.Unavailable,
}

// CLIFixes name edgectl tpm's flags.
var CLIFixes = Fixes{
	SocketAbsent:  "%s is absent (%s): start the TPM simulator (swtpm socket --tpm2 --server type=tcp,port=PORT ...) or give the right --address, or use --device " + DefaultDevice + " for a real TPM",
	DeviceAbsent:  "%s is absent: the device does not exist; enable the TPM 2.0 in the firmware and load its driver (modprobe tpm_crb or tpm_tis), or give --device/--address",
	Permission:    "%s: permission denied; run as root or as a member of the group owning it (tss)",
	OpenFailed:    "%s cannot be opened: %s",
	NotATPM:       "%s: %s: %s (is the TPM still there? check --device/--address)",
	Lockout:       "%s: %s: the TPM is in dictionary-attack lockout (TPM_RC_LOCKOUT) after too many wrong authorization values; wait for its recovery time (tpm2_getcap properties-variable: TPM2_PT_LOCKOUT_RECOVERY) or clear it with the lockout auth: tpm2_dictionarylockout --clear-lockout",
	HierarchyAuth: "%[1]s: %[2]s: the TPM refused the %[3]s hierarchy's authorization (TPM_RC_BAD_AUTH); pass its auth value in a file with --%[3]s-auth-file FILE, or reset it: tpm2_changeauth -c %[5]s -p <current>",
	KeyAuth:       true,
	OutOfRoom:     true,
	Other:         fault.Failed,
}
