// transport_error.go turns a failed HTTPS call to a cloud service (DPS, IoT
// Hub, an EST server) into a fault.Kind and a message that says why: trust,
// client certificate refused, timeout, interruption, unreachable.

package cloudhttp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"strings"
	"time"

	"github.com/edgev2/edgev2/fault"
)

// Call describes the request that failed.
type Call struct {
	Service  string        // "DPS", "IoT Hub", "EST server": who was called
	Host     string        // where (host[:port], or an endpoint URL)
	What     string        // the operation ("register", "simpleenroll", ...)
	Timeout  time.Duration // the bound that ctx applied
	Identity string        // whose client certificate was presented ("" none to name)
}

// Transport classifies err, a failure to get a whole response. parent is
// the caller's context, ctx the one bounded by c.Timeout.
func Transport(parent, ctx context.Context, c Call, err error) error {
	var (
		unknownCA *x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
		netErr    net.Error
	)
	switch {
	case errors.As(err, &unknownCA):
		return fault.Wrap(fault.Unavailable, err, "%s %s is not trusted: its certificate does not chain to the configured trust anchors", c.Service, c.Host)
	case errors.As(err, &hostErr):
		return fault.Wrap(fault.Unavailable, err, "%s %s is not trusted: its certificate is not valid for host %q", c.Service, c.Host, hostErr.Host)
	case errors.As(err, &invalid):
		return fault.Wrap(fault.Unavailable, err, "%s %s is not trusted: its certificate is invalid (%v)", c.Service, c.Host, invalid)
	case errors.As(err, &verify):
		return fault.Wrap(fault.Unavailable, err, "%s %s is not trusted: %v", c.Service, c.Host, verify.Err)
	case ClientCertRefused(err):
		of := ""
		if c.Identity != "" {
			of = fmt.Sprintf(" of %q", c.Identity)
		}
		return fault.Wrap(fault.NotAuthorized, err, "%s %s refused the TLS client certificate%s (%s)", c.Service, c.Host, of, Reason(err))
	case parent.Err() != nil:
		return fault.Wrap(fault.Unavailable, err, "%s %s at %s: interrupted: %v", c.Service, c.What, c.Host, context.Cause(parent))
	case ctx.Err() != nil, errors.As(err, &netErr) && netErr.Timeout():
		return fault.Wrap(fault.Unavailable, err, "%s %s at %s: no answer within %v", c.Service, c.What, c.Host, c.Timeout)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fault.Wrap(fault.Unavailable, err, "%s %s at %s: connection closed before the response was complete", c.Service, c.What, c.Host)
	}
	return fault.Wrap(fault.Unavailable, err, "%s %s cannot be reached: %s", c.Service, c.Host, Reason(err))
}

// ClientCertRefused reports whether err is a TLS alert by which the server
// refused our certificate, or the lack of one: bad, unsupported, revoked,
// expired or unknown certificate, unknown CA, access denied, certificate
// required. crypto/tls reports a received alert as a net.OpError "remote
// error" around its unexported alert type (a uint8), read by reflection,
// or as a tls.AlertError.
func ClientCertRefused(err error) bool {
	var code uint64
	var alert tls.AlertError
	var opErr *net.OpError
	switch {
	case errors.As(err, &alert):
		code = uint64(alert)
	case errors.As(err, &opErr) && opErr.Op == "remote error" && opErr.Err != nil:
		if v := reflect.ValueOf(opErr.Err); v.Kind() == reflect.Uint8 {
			code = v.Uint()
		} else {
			return refusalText(opErr.Err.Error())
		}
	default:
		return false
	}
	switch code {
	case 42, 43, 44, 45, 46, 48, 49, 116:
		return true
	}
	return false
}

// refusalText matches an alert known only by its text.
func refusalText(s string) bool {
	for _, t := range []string{"bad certificate", "unsupported certificate", "certificate revoked",
		"certificate expired", "unknown certificate", "unknown certificate authority",
		"access denied", "certificate required"} {
		if strings.HasSuffix(s, t) {
			return true
		}
	}
	return false
}

// Reason shortens a transport error to its innermost useful text.
func Reason(err error) string {
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Err != nil {
		return opErr.Op + ": " + opErr.Err.Error()
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return dnsErr.Error()
	}
	for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(u) {
		err = u
	}
	return err.Error()
}
