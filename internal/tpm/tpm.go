// Package tpm onboards a device from its TPM 2.0: it verifies the maker's
// EK certificate, creates the IDevID (endorsement hierarchy, 0x81020000,
// certificate in NV 0x01C90000) and the LDevID under the SRK (0x81000001,
// 0x81000002), signs CSRs and TLS handshakes in the TPM and enrolls over EST.
// It speaks TPM commands itself (google/go-tpm); only the tpm2-pkcs11 link
// step runs a tool (tpm2_ptool), as the store has no other way in.
package tpm

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/edgev2/edgev2/internal/fault"
	"github.com/edgev2/edgev2/internal/tpmconn"
)

// The handles of the zero-touch flow (TCG provisioning guidance and the
// IDevID/LDevID layout of the tpm2cloud blueprint).
const (
	RSAEKHandle     = tpm2.TPMHandle(0x81010001)
	SRKHandle       = tpm2.TPMHandle(0x81000001)
	LDevIDHandle    = tpm2.TPMHandle(0x81000002)
	IDevIDHandle    = tpm2.TPMHandle(0x81020000)
	IDevIDCertNV    = tpm2.TPMHandle(0x01C90000)
	RSAEKCertNV     = tpm2.TPMHandle(0x01C00002)
	ECCEKCertNV     = tpm2.TPMHandle(0x01C0000A) // ECC NIST P-256 EK certificate
	ECCP384EKCertNV = tpm2.TPMHandle(0x01C00016) // ECC NIST P-384 EK certificate (swtpm's ECC EK)

	// DefaultDevice is the kernel's TPM resource manager.
	DefaultDevice = tpmconn.DefaultDevice
)

// Config says which TPM to use and the hierarchy auth values, which
// callers read from files, never from the command line.
type Config struct {
	Device  string // character device; DefaultDevice when Device and Address are empty
	Address string // raw TPM 2.0 command socket host:port (swtpm --server)

	EndorsementAuth, OwnerAuth []byte
}

// Where names the TPM in messages.
func (c Config) Where() string {
	if c.Address != "" {
		return "TPM at " + c.Address
	}
	if c.Device == "" {
		return "TPM " + DefaultDevice
	}
	return "TPM " + c.Device
}

// TPM is an open connection to one TPM. Its methods serialise on a mutex,
// so one TPM may back several Signers.
type TPM struct {
	cfg Config
	mu  sync.Mutex
	t   transport.TPMCloser
}

// Open connects to the TPM cfg names. An absent TPM is fault.Unavailable
// with the fix; no TPM command is sent yet.
func Open(ctx context.Context, cfg Config) (*TPM, error) {
	t, err := tpmconn.Open(ctx, cfg.Device, cfg.Address)
	var oe *tpmconn.Error
	if errors.As(err, &oe) {
		switch oe.Failure {
		case tpmconn.SocketAbsent:
			return nil, fault.Wrap(fault.Unavailable, err, "%s is absent (%s): start the TPM simulator (swtpm socket --tpm2 --server type=tcp,port=PORT ...) or give the right --address, or use --device %s for a real TPM", cfg.Where(), oe.Reason, DefaultDevice)
		case tpmconn.DeviceAbsent:
			return nil, fault.Wrap(fault.Unavailable, err, "%s is absent: the device does not exist; enable the TPM 2.0 in the firmware and load its driver (modprobe tpm_crb or tpm_tis), or give --device/--address", cfg.Where())
		case tpmconn.Permission:
			return nil, fault.Wrap(fault.NotAuthorized, err, "%s: permission denied; run as root or as a member of the group owning it (tss)", cfg.Where())
		}
		return nil, fault.Wrap(fault.Unavailable, err, "%s cannot be opened: %s", cfg.Where(), oe.Reason)
	}
	if err != nil {
		return nil, err
	}
	return &TPM{cfg: cfg, t: t}, nil
}

// Close closes the connection. Transient objects are flushed by the
// operations that load them.
func (t *TPM) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.t.Close()
}

// Where names the TPM in messages.
func (t *TPM) Where() string { return t.cfg.Where() }

func (t *TPM) endorsement() tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(t.cfg.EndorsementAuth)}
}

func (t *TPM) owner() tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(t.cfg.OwnerAuth)}
}

// flush drops a transient object; a failure only leaks a slot until the
// connection closes (the resource manager flushes it then).
func (t *TPM) flush(h tpm2.TPMHandle) {
	_, _ = tpm2.FlushContext{FlushHandle: h}.Execute(t.t)
}

// Hierarchy names whose auth a command used, so a refusal can name the fix.
type hierarchy string

const (
	noHierarchy hierarchy = ""
	endorsement hierarchy = "endorsement"
	ownerH      hierarchy = "owner"
)

// ErrLockout and ErrBadAuth are matched with errors.Is on what TPM
// operations return.
var (
	ErrLockout = errors.New("TPM in dictionary-attack lockout")
	ErrBadAuth = errors.New("TPM refused the hierarchy authorization")
)

type tpmFault struct {
	error
	sentinel error
}

func (e *tpmFault) Unwrap() []error { return []error{e.error, e.sentinel} }

// tpmError turns a failure of what into an error that names the fix for
// what an operator can mend: lockout, a wrong hierarchy auth, a TPM gone.
func (t *TPM) tpmError(err error, what string, h hierarchy) error {
	if err == nil {
		return nil
	}
	where := t.cfg.Where()
	var rc tpm2.TPMRC
	if !errors.As(err, &rc) {
		return fault.Wrap(fault.Unavailable, err, "%s: %s: %s (is the TPM still there? check --device/--address)", where, what, tpmconn.Reason(err))
	}
	switch {
	case errors.Is(rc, tpm2.TPMRCLockout):
		return &tpmFault{fault.Wrap(fault.Unavailable, err, "%s: %s: the TPM is in dictionary-attack lockout (TPM_RC_LOCKOUT) after too many wrong authorization values; wait for its recovery time (tpm2_getcap properties-variable: TPM2_PT_LOCKOUT_RECOVERY) or clear it with the lockout auth: tpm2_dictionarylockout --clear-lockout", where, what), ErrLockout}
	case h != noHierarchy && (errors.Is(rc, tpm2.TPMRCBadAuth) || errors.Is(rc, tpm2.TPMRCAuthFail)):
		return &tpmFault{fault.Wrap(fault.NotAuthorized, err, "%s: %s: the TPM refused the %s hierarchy's authorization (TPM_RC_BAD_AUTH); pass its auth value in a file with --%s-auth-file FILE, or reset it: tpm2_changeauth -c %s -p <current>", where, what, h, h, string(h)[:1]), ErrBadAuth}
	case errors.Is(rc, tpm2.TPMRCBadAuth), errors.Is(rc, tpm2.TPMRCAuthFail):
		return &tpmFault{fault.Wrap(fault.NotAuthorized, err, "%s: %s: the TPM refused the key's authorization (%s)", where, what, rcName(rc)), ErrBadAuth}
	case errors.Is(rc, tpm2.TPMRCRetry), errors.Is(rc, tpm2.TPMRCYielded), errors.Is(rc, tpm2.TPMRCTesting):
		return fault.Wrap(fault.Unavailable, err, "%s: %s: the TPM is busy (%s); try again", where, what, rcName(rc))
	case errors.Is(rc, tpm2.TPMRCNVSpace), errors.Is(rc, tpm2.TPMRCObjectMemory):
		return fault.Wrap(fault.Unavailable, err, "%s: %s: the TPM is out of room (%s); remove unused persistent objects or NV indices", where, what, rcName(rc))
	}
	return fault.Wrap(fault.Failed, err, "%s: %s failed: %s", where, what, rcName(rc))
}

func rcName(rc tpm2.TPMRC) string { return fmt.Sprintf("%v (0x%03x)", rc, uint32(rc)) }

// handleFree reports whether err is the TPM saying a handle holds nothing.
func handleFree(err error) bool {
	return errors.Is(err, tpm2.TPMRCHandle) || errors.Is(err, tpm2.TPMRCValue) || errors.Is(err, tpm2.TPMRCReferenceH0)
}
