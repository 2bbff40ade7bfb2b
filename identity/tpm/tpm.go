// Package tpm is identityd's TPM 2.0 access for DPS TPM attestation: the
// endorsement and storage root keys, activation and import of the DPS
// authentication key, and HMAC signing with it (google/go-tpm, no tools).
package tpm

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/edgev2/edgev2/internal/fault"
	"github.com/edgev2/edgev2/internal/tpm/ek"
	"github.com/edgev2/edgev2/internal/tpmconn"
)

// Well-known persistent handles (TCG provisioning guidance; the Azure IoT
// SDKs and aziot-tpmd use the same).
const (
	EKHandle  = tpm2.TPMHandle(0x81010001) // RSA 2048 EK, low range
	SRKHandle = tpm2.TPMHandle(0x81000001) // RSA 2048 SRK
	// DefaultAuthKeyHandle is where the imported DPS authentication key
	// is persisted: the Azure IoT SDKs' id key handle, aziot-tpmd's
	// default auth_key_index 0x100 in the owner's persistent range.
	DefaultAuthKeyHandle = tpm2.TPMHandle(0x81000100)
	// DefaultDevice is the kernel's TPM resource manager.
	DefaultDevice = tpmconn.DefaultDevice
)

// Config says which TPM to use.
type Config struct {
	// Device is a TPM character device (DefaultDevice when both are empty).
	Device string
	// Address is a raw TPM 2.0 command socket (host:port), e.g. swtpm's
	// --server; it replaces Device.
	Address string
	// AuthKeyHandle persists the DPS authentication key (DefaultAuthKeyHandle when 0).
	AuthKeyHandle tpm2.TPMHandle
	// EndorsementAuth and OwnerAuth are the hierarchies' auth values,
	// empty on a TPM nobody took ownership of.
	EndorsementAuth, OwnerAuth []byte
	// EKTemplate creates the EK when 0x81010001 holds none (ek.Auto:
	// the one the TPM's EK certificate certifies).
	EKTemplate ek.Template
}

func (c Config) withDefaults() Config {
	if c.Device == "" && c.Address == "" {
		c.Device = DefaultDevice
	}
	if c.AuthKeyHandle == 0 {
		c.AuthKeyHandle = DefaultAuthKeyHandle
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

// TPM is an open connection to one TPM. It is not safe for concurrent
// use; Close flushes what it loaded and closes the connection.
type TPM struct {
	cfg   Config
	t     transport.TPMCloser
	mu    sync.Mutex
	flush []tpm2.TPMHandle // transient objects to flush on Close
}

// Open connects to the TPM cfg names. A missing device or a refused
// connection is fault.Unavailable naming the device and the fix.
func Open(ctx context.Context, cfg Config) (*TPM, error) {
	cfg = cfg.withDefaults()
	if cfg.AuthKeyHandle>>24 != 0x81 {
		return nil, fault.New(fault.InvalidArgs, "TPM auth_key_handle 0x%08x is not a persistent handle; use one in 0x81000000-0x817fffff such as 0x81000100", uint32(cfg.AuthKeyHandle))
	}
	t, err := tpmconn.Open(ctx, cfg.Device, cfg.Address)
	var oe *tpmconn.Error
	if errors.As(err, &oe) {
		switch oe.Failure {
		case tpmconn.SocketAbsent:
			return nil, fault.Wrap(fault.Unavailable, err, "%s is absent: %v; start the TPM (e.g. swtpm socket --server type=tcp,port=...) or fix [tpm] address in identityd.toml", cfg.Where(), oe.Reason)
		case tpmconn.DeviceAbsent:
			return nil, fault.Wrap(fault.Unavailable, err, "%s is absent: the device does not exist; this machine has no TPM 2.0 enabled (turn it on in the firmware) or the kernel driver is not loaded (modprobe tpm_crb or tpm_tis), or set [tpm] device/address in identityd.toml", cfg.Where())
		case tpmconn.Permission:
			return nil, fault.Wrap(fault.NotAuthorized, err, "%s: permission denied; identityd's user must be in the group owning it (tss): usermod -aG tss edgeid", cfg.Where())
		}
		return nil, fault.Wrap(fault.Unavailable, err, "%s cannot be opened: %v; check the device or set [tpm] device/address in identityd.toml", cfg.Where(), oe.Reason)
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

// Close flushes the transient objects t loaded and closes the connection.
func (t *TPM) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, h := range t.flush {
		_, _ = tpm2.FlushContext{FlushHandle: h}.Execute(t.t)
	}
	t.flush = nil
	return t.t.Close()
}

func (t *TPM) flushLater(h tpm2.TPMHandle) {
	t.mu.Lock()
	t.flush = append(t.flush, h)
	t.mu.Unlock()
}

// tpmError turns a TPM response code from what into an error naming the
// fix for the faults an operator can mend: dictionary-attack lockout and
// wrong hierarchy auth. hierarchy names the auth used ("endorsement",
// "owner" or "").
func (t *TPM) tpmError(err error, what, hierarchy string) error {
	if err == nil {
		return nil
	}
	where := t.cfg.Where()
	var rc tpm2.TPMRC
	if !errors.As(err, &rc) {
		return fault.Wrap(fault.Unavailable, err, "%s: %s: %v (is it a TPM 2.0? check [tpm] in identityd.toml)", where, what, tpmconn.Reason(err))
	}
	switch {
	case errors.Is(rc, tpm2.TPMRCLockout):
		return fault.Wrap(fault.Unavailable, err, "%s: %s: the TPM is in dictionary-attack lockout (TPM_RC_LOCKOUT) after too many wrong authorization values; wait for its recovery time, or reset it with the lockout auth: tpm2_dictionarylockout --clear-lockout", where, what)
	case hierarchy != "" && (errors.Is(rc, tpm2.TPMRCBadAuth) || errors.Is(rc, tpm2.TPMRCAuthFail)):
		return fault.Wrap(fault.NotAuthorized, err, "%s: %s: the TPM refused the %s hierarchy's authorization (%s); set [tpm.hierarchy_authorization] %s in identityd.toml to its auth value, or clear it: tpm2_changeauth -c %s -p <current>", where, what, hierarchy, rcName(rc), hierarchy, hierarchy[:1])
	case errors.Is(rc, tpm2.TPMRCRetry), errors.Is(rc, tpm2.TPMRCYielded), errors.Is(rc, tpm2.TPMRCTesting):
		return fault.Wrap(fault.Unavailable, err, "%s: %s: the TPM is busy (%s); try again", where, what, rcName(rc))
	}
	return fault.Wrap(fault.Unavailable, err, "%s: %s failed: %s", where, what, rcName(rc))
}

func rcName(rc tpm2.TPMRC) string { return fmt.Sprintf("%v (0x%03x)", rc, uint32(rc)) }
