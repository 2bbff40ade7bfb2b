// conn.go opens a TPM 2.0: the kernel's resource manager device, or a raw
// TPM command socket (swtpm --server), read whole and retried while the TPM
// asks to, as go-tpm's device transport does.

package tpm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
)

// DefaultDevice is the kernel's TPM resource manager.
const DefaultDevice = "/dev/tpmrm0"

// Failure says why OpenTransport failed, for callers to name their own fix.
type Failure int

const (
	SocketAbsent Failure = iota + 1 // nothing answers at the address
	DeviceAbsent                    // the device node does not exist
	Permission                      // the device exists but may not be opened
	DeviceError                     // the device cannot be opened for another reason
)

// ConnError is OpenTransport's error.
type ConnError struct {
	Failure Failure
	Reason  string // short: "connection refused", "timed out", ...
	Err     error
}

func (e *ConnError) Error() string { return e.Reason }
func (e *ConnError) Unwrap() error { return e.Err }

// OpenTransport connects to the TPM at address (host:port) if it is set, else to
// device (DefaultDevice when empty). Commands on the socket are bounded
// by ctx.
func OpenTransport(ctx context.Context, device, address string) (transport.TPMCloser, error) {
	if address != "" {
		var d net.Dialer
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		conn, err := d.DialContext(dctx, "tcp", address)
		if err != nil {
			return nil, &ConnError{Failure: SocketAbsent, Reason: Reason(err), Err: err}
		}
		return &conn2{conn: conn, ctx: ctx}, nil
	}
	if device == "" {
		device = DefaultDevice
	}
	if _, err := os.Stat(device); errors.Is(err, os.ErrNotExist) {
		return nil, &ConnError{Failure: DeviceAbsent, Reason: "the device does not exist", Err: err}
	}
	dev, err := linuxtpm.Open(device)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, &ConnError{Failure: Permission, Reason: "permission denied", Err: err}
		}
		return nil, &ConnError{Failure: DeviceError, Reason: Reason(err), Err: err}
	}
	return dev, nil
}

// conn2 is a raw TPM command stream bounded by ctx.
type conn2 struct {
	conn net.Conn
	ctx  context.Context
}

// Send runs one command, repeating it while the TPM answers
// TPM_RC_RETRY, TPM_RC_YIELDED or TPM_RC_TESTING, with back-off from 1 ms
// doubling to 1 s, for about half a minute at most; then the TPM's answer
// is returned as it is.
func (c *conn2) Send(cmd []byte) ([]byte, error) {
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

func (c *conn2) send(cmd []byte) ([]byte, error) {
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

// maxResponse bounds a TPM response (TPM 2.0 responses are a few KiB).
const maxResponse = 64 << 10

func (c *conn2) Close() error { return c.conn.Close() }

// Reason is a short, secret-free reason for a connection error.
func Reason(err error) string {
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
