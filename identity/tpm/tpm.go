// Package tpm is identityd's TPM 2.0 access for DPS TPM attestation: the
// endorsement and storage root keys, activation and import of the DPS
// authentication key, and HMAC signing with it (google/go-tpm, no tools).
package tpm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"

	"github.com/edgev2/edgev2/internal/fault"
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
	DefaultDevice = "/dev/tpmrm0"
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
	var t transport.TPMCloser
	if cfg.Address != "" {
		var d net.Dialer
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		conn, err := d.DialContext(dctx, "tcp", cfg.Address)
		if err != nil {
			return nil, fault.Wrap(fault.Unavailable, err, "%s is absent: %v; start the TPM (e.g. swtpm socket --server type=tcp,port=...) or fix [tpm] address in identityd.toml", cfg.Where(), reason(err))
		}
		t = &connTPM{conn: conn, ctx: ctx}
	} else {
		if _, err := os.Stat(cfg.Device); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fault.Wrap(fault.Unavailable, err, "%s is absent: the device does not exist; this machine has no TPM 2.0 enabled (turn it on in the firmware) or the kernel driver is not loaded (modprobe tpm_crb or tpm_tis), or set [tpm] device/address in identityd.toml", cfg.Where())
			}
		}
		dev, err := linuxtpm.Open(cfg.Device)
		if err != nil {
			if errors.Is(err, os.ErrPermission) {
				return nil, fault.Wrap(fault.NotAuthorized, err, "%s: permission denied; identityd's user must be in the group owning it (tss): usermod -aG tss edgeid", cfg.Where())
			}
			return nil, fault.Wrap(fault.Unavailable, err, "%s cannot be opened: %v; check the device or set [tpm] device/address in identityd.toml", cfg.Where(), reason(err))
		}
		t = dev
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

// connTPM is a raw TPM command stream (swtpm --server) bounded by ctx.
type connTPM struct {
	conn net.Conn
	ctx  context.Context
}

// Send runs one command, repeating it while the TPM answers
// TPM_RC_RETRY, TPM_RC_YIELDED or TPM_RC_TESTING (as go-tpm's device
// transport does), with back-off from 1 ms doubling to 1 s, for about
// half a minute at most; then the TPM is reported busy.
func (c *connTPM) Send(cmd []byte) ([]byte, error) {
	for i, wait := 0, time.Millisecond; ; i, wait = i+1, min(2*wait, time.Second) {
		rsp, err := c.send(cmd)
		if err != nil {
			return nil, err
		}
		switch tpm2.TPMRC(binary.BigEndian.Uint32(rsp[6:10])) {
		case tpm2.TPMRCRetry, tpm2.TPMRCYielded, tpm2.TPMRCTesting:
			if i == 40 {
				return rsp, nil
			}
		default:
			return rsp, nil
		}
		select {
		case <-c.ctx.Done():
			return nil, c.ctx.Err()
		case <-time.After(wait):
		}
	}
}

func (c *connTPM) send(cmd []byte) ([]byte, error) {
	if err := c.ctx.Err(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(2 * time.Minute)
	if d, ok := c.ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.conn.SetDeadline(deadline)
	if _, err := c.conn.Write(cmd); err != nil {
		return nil, err
	}
	// A stream may split a response: read the header, then its size.
	var hdr [10]byte
	if _, err := io.ReadFull(c.conn, hdr[:]); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < 10 || size > maxResponse {
		return nil, fmt.Errorf("TPM response size %d is not a TPM 2.0 response", size)
	}
	rsp := make([]byte, size)
	copy(rsp, hdr[:])
	if _, err := io.ReadFull(c.conn, rsp[10:]); err != nil {
		return nil, err
	}
	return rsp, nil
}

// maxResponse bounds a TPM response (TPM2 responses are a few KiB).
const maxResponse = 64 << 10

func (c *connTPM) Close() error { return c.conn.Close() }

func reason(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	case errors.Is(err, io.EOF):
		return "connection closed"
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err.Error()
	}
	return err.Error()
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
		return fault.Wrap(fault.Unavailable, err, "%s: %s: %v (is it a TPM 2.0? check [tpm] in identityd.toml)", where, what, reason(err))
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
