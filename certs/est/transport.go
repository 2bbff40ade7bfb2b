package est

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/edgev2/edgev2/internal/fault"
	"github.com/edgev2/edgev2/internal/netfault"
)

// MaxResponseSize caps an EST response body; a certificate chain in base64
// is a few KiB, so anything near this is not a legitimate answer.
const MaxResponseSize = 1 << 20

const (
	// maxReasonLen caps the server's text quoted in an error.
	maxReasonLen = 200
	// defaultRetryAfter is used when a 202 lacks a usable Retry-After,
	// which RFC 7030 4.2.3 says it must carry.
	defaultRetryAfter = 60 * time.Second
	// minRetryAfter keeps a server that says "0" or a past date from
	// making us poll in a tight loop.
	minRetryAfter = time.Second
)

// response is a fully read HTTP response.
type response struct {
	status int
	header http.Header
	body   []byte
}

// roundTrip sends one EST request and reads the whole answer, bounded by
// cfg.Timeout and MaxResponseSize.
func (c *Client) roundTrip(ctx context.Context, hc *http.Client, auth Auth, op, method string, body []byte) (*response, error) {
	where := c.endpoint(op)
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, where, rd)
	if err != nil {
		return nil, fault.Wrap(fault.Failed, err, "EST %s: cannot build request for %s", op, where)
	}
	req.Header.Set("Accept", "application/pkcs7-mime")
	if op == opCSRAttrs {
		req.Header.Set("Accept", "application/csrattrs")
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/pkcs10")
	}
	if auth.Username != "" {
		req.SetBasicAuth(auth.Username, auth.Password)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, c.transportError(parent, ctx, op, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseSize+1))
	if err != nil {
		return nil, c.transportError(parent, ctx, op, err)
	}
	if len(data) > MaxResponseSize {
		return nil, c.invalidResponse(op, fault.New(fault.InvalidArgs, "body is larger than %d bytes", MaxResponseSize))
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

// transportError classifies a failure to get a response.
// parent is the caller's context, ctx the one bounded by cfg.Timeout.
func (c *Client) transportError(parent, ctx context.Context, op string, err error) error {
	where := c.endpoint(op)
	var cross *crossOriginError
	switch {
	case errors.As(err, &cross):
		return fault.Wrap(fault.Unavailable, err, "EST %s at %s: server redirected to %s; not followed", op, where, cross.to)
	case errors.Is(err, errTooManyRedirects):
		return fault.Wrap(fault.Unavailable, err, "EST %s at %s: too many redirects", op, where)
	}
	return netfault.Transport(parent, ctx, netfault.Call{Service: "EST server", Host: where, What: op, Timeout: c.cfg.Timeout}, err)
}

// statusError maps an unexpected HTTP status to a fault kind (RFC 7030 4.2.3).
func (c *Client) statusError(op string, r *response) error {
	where := c.endpoint(op)
	reason := serverReason(r)
	code := r.status
	switch {
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return fault.New(fault.NotAuthorized, "EST %s at %s: not authorized (HTTP %d)%s", op, where, code, reason)
	case code == http.StatusBadRequest:
		return fault.New(fault.InvalidArgs, "EST %s at %s: server rejected the request (HTTP 400)%s", op, where, reason)
	case code == http.StatusNotFound:
		return fault.New(fault.NotFound, "EST %s at %s: not found (HTTP 404; check the URL and CA label)%s", op, where, reason)
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500 && code <= 599:
		return fault.New(fault.Unavailable, "EST %s at %s: server unavailable (HTTP %d)%s", op, where, code, reason)
	}
	return fault.New(fault.Failed, "EST %s at %s: unexpected HTTP status %d%s", op, where, code, reason)
}

// invalidResponse reports a 200 whose body cannot be used.
func (c *Client) invalidResponse(op string, cause error) error {
	return fault.Wrap(fault.Failed, cause, "EST server %s sent an invalid response: %s", c.endpoint(op), fault.Message(cause))
}

// serverReason returns ": server says \"...\"" for a text/plain error body,
// printable and short, or "" when there is none.
func serverReason(r *response) string {
	if len(r.body) == 0 {
		return ""
	}
	if ct := r.header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "text/plain" {
			return ""
		}
	}
	s := sanitize(r.body, maxReasonLen)
	if s == "" {
		return ""
	}
	return fmt.Sprintf(": server says %q", s)
}

// sanitize turns untrusted bytes into one printable line of at most max
// runes: invalid UTF-8 and non-printable runes become spaces, runs of spaces
// collapse, and a cut is marked with "...".
func sanitize(b []byte, max int) string {
	var sb strings.Builder
	n := 0
	space := false
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		b = b[size:]
		if r == utf8.RuneError || !unicode.IsPrint(r) || unicode.IsSpace(r) {
			space = sb.Len() > 0
			continue
		}
		if n >= max {
			sb.WriteString("...")
			return sb.String()
		}
		if space {
			if n+1 >= max {
				sb.WriteString("...")
				return sb.String()
			}
			sb.WriteByte(' ')
			n++
			space = false
		}
		sb.WriteRune(r)
		n++
	}
	return sb.String()
}

// checkMediaType checks Content-Type against want, ignoring parameters
// (RFC 8951: smime-type may be missing) and case.
func checkMediaType(h http.Header, want ...string) error {
	ct := h.Get("Content-Type")
	if ct == "" {
		return fault.New(fault.InvalidArgs, "no Content-Type (want %s)", want[0])
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return fault.New(fault.InvalidArgs, "malformed Content-Type %q", sanitize([]byte(ct), 80))
	}
	for _, w := range want {
		if mt == w {
			return nil
		}
	}
	return fault.New(fault.InvalidArgs, "Content-Type is %q, want %s", sanitize([]byte(mt), 80), want[0])
}

// retryAfter reads a 202's Retry-After (delta-seconds or HTTP-date) and
// clamps it to [minRetryAfter, MaxRetryAfter]. An HTTP-date is measured
// against the response's Date when present, so clock skew between device
// and server does not stretch or shrink the wait.
func (c *Client) retryAfter(h http.Header) time.Duration {
	d := defaultRetryAfter
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v != "" && strings.Trim(v, "0123456789") == "" {
		secs, err := strconv.ParseUint(v, 10, 64)
		if err != nil || secs > uint64(c.cfg.MaxRetryAfter/time.Second) {
			d = c.cfg.MaxRetryAfter // too many digits is still "a long time"
		} else {
			d = time.Duration(secs) * time.Second
		}
	} else if at, err := http.ParseTime(v); err == nil {
		now := c.now()
		if date, err := http.ParseTime(h.Get("Date")); err == nil {
			now = date
		}
		d = at.Sub(now)
	}
	if d < minRetryAfter {
		d = minRetryAfter
	}
	if d > c.cfg.MaxRetryAfter {
		d = c.cfg.MaxRetryAfter
	}
	return d
}
