// Package tpm is edgev2's TPM 2.0 access. For identityd's DPS TPM
// attestation it reads the endorsement and storage root keys, activates and
// imports the DPS authentication key and signs with it (HMAC). For device
// onboarding (edgectl tpm) it verifies the maker's EK certificate, creates
// the IDevID (endorsement hierarchy, 0x81020000, certificate in NV
// 0x01C90000) and the LDevID under the SRK (0x81000001, 0x81000002), signs
// CSRs and TLS handshakes in the TPM and enrolls over EST. It speaks TPM
// commands itself (google/go-tpm, conn.go opens the device or socket); only
// the tpm2-pkcs11 link step runs a tool (tpm2_ptool), as the store has no
// other way in.
package tpm

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/tpm/ek"
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

	// EKHandle is the RSA 2048 EK, low range, as the Azure IoT SDKs and
	// aziot-tpmd persist it.
	EKHandle = RSAEKHandle
	// DefaultAuthKeyHandle is where the imported DPS authentication key
	// is persisted: the Azure IoT SDKs' id key handle, aziot-tpmd's
	// default auth_key_index 0x100 in the owner's persistent range.
	DefaultAuthKeyHandle = tpm2.TPMHandle(0x81000100)
)

// Config says which TPM to use and the hierarchy auth values, which
// callers read from files, never from the command line.
type Config struct {
	// Device is a TPM character device (DefaultDevice when both are empty).
	Device string
	// Address is a raw TPM 2.0 command socket (host:port), e.g. swtpm's
	// --server; it replaces Device.
	Address string
	// EndorsementAuth and OwnerAuth are the hierarchies' auth values,
	// empty on a TPM nobody took ownership of.
	EndorsementAuth, OwnerAuth []byte
	// AuthKeyHandle persists the DPS authentication key (DefaultAuthKeyHandle when 0).
	AuthKeyHandle tpm2.TPMHandle
	// EKTemplate creates the EK when 0x81010001 holds none (ek.Auto:
	// the one the TPM's EK certificate certifies).
	EKTemplate ek.Template
	// Fixes are the remedies errors name; nil names identityd's
	// settings (DaemonFixes).
	Fixes *Fixes
}

func (c Config) withDefaults() Config {
	if c.Device == "" && c.Address == "" {
		c.Device = DefaultDevice
	}
	if c.AuthKeyHandle == 0 {
		c.AuthKeyHandle = DefaultAuthKeyHandle
	}
	if c.Fixes == nil {
		c.Fixes = &DaemonFixes
	}
	return c
}

// Where names the TPM for messages: the device path or the address.
func (c Config) Where() string {
	c = c.withDefaults()
	if c.Address != "" {
		return "TPM at " + c.Address
	}
	return "TPM " + c.Device
}

// TPM is an open connection to one TPM. The onboarding operations
// serialise on a mutex, so one TPM may back several Signers; the
// attestation ones are for one caller at a time. Close flushes what was
// left loaded and closes the connection.
type TPM struct {
	cfg Config
	mu  sync.Mutex
	t   transport.TPMCloser

	flushMu   sync.Mutex
	flushList []tpm2.TPMHandle // transient objects to flush on Close
}

// Open connects to the TPM cfg names. A missing device or a refused
// connection is fault.Unavailable naming the device and the fix; no TPM
// command is sent yet.
func Open(ctx context.Context, cfg Config) (*TPM, error) {
	cfg = cfg.withDefaults()
	if cfg.AuthKeyHandle>>24 != 0x81 {
		return nil, fault.New(fault.InvalidArgs, "TPM auth_key_handle 0x%08x is not a persistent handle; use one in 0x81000000-0x817fffff such as 0x81000100", uint32(cfg.AuthKeyHandle))
	}
	t, err := OpenTransport(ctx, cfg.Device, cfg.Address)
	var oe *ConnError
	if errors.As(err, &oe) {
		fx := cfg.Fixes
		switch oe.Failure {
		case SocketAbsent:
			return nil, fault.Wrap(fault.Unavailable, err, fx.SocketAbsent, cfg.Where(), oe.Reason)
		case DeviceAbsent:
			return nil, fault.Wrap(fault.Unavailable, err, fx.DeviceAbsent, cfg.Where())
		case Permission:
			return nil, fault.Wrap(fault.NotAuthorized, err, fx.Permission, cfg.Where())
		}
		return nil, fault.Wrap(fault.Unavailable, err, fx.OpenFailed, cfg.Where(), oe.Reason)
	}
	if err != nil {
		return nil, err
	}
	return &TPM{cfg: cfg, t: t}, nil
}

// Transport is the raw TPM connection, for callers with their own commands.
func (t *TPM) Transport() transport.TPM { return t.t }

// Config is the configuration t was opened with, defaults applied.
func (t *TPM) Config() Config { return t.cfg }

// Close flushes the transient objects left loaded (see flushLater) and
// closes the connection.
func (t *TPM) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.flushMu.Lock()
	defer t.flushMu.Unlock()
	for _, h := range t.flushList {
		t.flush(h)
	}
	t.flushList = nil
	return t.t.Close()
}

// flushLater keeps a transient object loaded until Close.
func (t *TPM) flushLater(h tpm2.TPMHandle) {
	t.flushMu.Lock()
	t.flushList = append(t.flushList, h)
	t.flushMu.Unlock()
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
// lock takes the TPM for one operation unless ctx is done already; the
// caller unlocks t.mu.
func (t *TPM) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t.mu.Lock()
	return nil
}

// evictControl makes the loaded object h (named name) persistent at
// persistent, or, when h is persistent itself, removes it from there.
func (t *TPM) evictControl(h tpm2.TPMHandle, name tpm2.TPM2BName, persistent tpm2.TPMHandle) error {
	_, err := tpm2.EvictControl{Auth: t.owner(), ObjectHandle: tpm2.NamedHandle{Handle: h, Name: name}, PersistentHandle: persistent}.Execute(t.t)
	return err
}

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
	where, fx := t.cfg.Where(), t.cfg.Fixes
	var rc tpm2.TPMRC
	if !errors.As(err, &rc) {
		return fault.Wrap(fault.Unavailable, err, fx.NotATPM, where, what, Reason(err))
	}
	switch {
	case errors.Is(rc, tpm2.TPMRCLockout):
		return &tpmFault{fault.Wrap(fault.Unavailable, err, fx.Lockout, where, what), ErrLockout}
	case h != noHierarchy && (errors.Is(rc, tpm2.TPMRCBadAuth) || errors.Is(rc, tpm2.TPMRCAuthFail)):
		return &tpmFault{fault.Wrap(fault.NotAuthorized, err, fx.HierarchyAuth, where, what, h, rcName(rc), string(h)[:1]), ErrBadAuth}
	case fx.KeyAuth && (errors.Is(rc, tpm2.TPMRCBadAuth) || errors.Is(rc, tpm2.TPMRCAuthFail)):
		return &tpmFault{fault.Wrap(fault.NotAuthorized, err, "%s: %s: the TPM refused the key's authorization (%s)", where, what, rcName(rc)), ErrBadAuth}
	case errors.Is(rc, tpm2.TPMRCRetry), errors.Is(rc, tpm2.TPMRCYielded), errors.Is(rc, tpm2.TPMRCTesting):
		return fault.Wrap(fault.Unavailable, err, "%s: %s: the TPM is busy (%s); try again", where, what, rcName(rc))
	case fx.OutOfRoom && (errors.Is(rc, tpm2.TPMRCNVSpace) || errors.Is(rc, tpm2.TPMRCObjectMemory)):
		return fault.Wrap(fault.Unavailable, err, "%s: %s: the TPM is out of room (%s); remove unused persistent objects or NV indices", where, what, rcName(rc))
	}
	return fault.Wrap(fx.Other, err, "%s: %s failed: %s", where, what, rcName(rc))
}

func rcName(rc tpm2.TPMRC) string { return fmt.Sprintf("%v (0x%03x)", rc, uint32(rc)) }

// handleFree reports whether err is the TPM saying a handle holds nothing.
func handleFree(err error) bool {
	return errors.Is(err, tpm2.TPMRCHandle) || errors.Is(err, tpm2.TPMRCValue) || errors.Is(err, tpm2.TPMRCReferenceH0)
}
