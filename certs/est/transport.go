package est

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"time"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/cloudhttp"
)

// MaxResponseSize caps an EST response body; a certificate chain in base64
// is a few KiB, so anything near this is not a legitimate answer.
const MaxResponseSize = 1 << 20

const (
	// defaultRetryAfter is used when a 202 lacks a usable Retry-After,
	// which RFC 7030 4.2.3 says it must carry.
	defaultRetryAfter = 60 * time.Second
	// minRetryAfter keeps a server that says "0" or a past date from
	// making us poll in a tight loop.
	minRetryAfter = time.Second
)

// response is a fully read HTTP response.
type response = cloudhttp.Response

// roundTrip sends one EST request and reads the whole answer, bounded by
// cfg.Timeout and MaxResponseSize.
func (c *Client) roundTrip(ctx context.Context, hc *http.Client, auth Auth, op, method string, body []byte) (*response, error) {
	where := c.endpoint(op)
	req, err := http.NewRequestWithContext(ctx, method, where, cloudhttp.Body(body))
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
	call := cloudhttp.Call{Service: "EST server", Host: where, What: op, Timeout: c.cfg.Timeout}
	resp, err := cloudhttp.RoundTrip(hc, call, req, MaxResponseSize)
	if err != nil {
		return nil, c.redirectError(op, err)
	}
	if err := resp.Oversize(); err != nil {
		return nil, c.invalidResponse(op, err)
	}
	return resp, nil
}

// redirectError says why a redirect was not followed; other transport
// errors, already classified by cloudhttp, pass unchanged.
func (c *Client) redirectError(op string, err error) error {
	where := c.endpoint(op)
	var cross *crossOriginError
	switch {
	case errors.As(err, &cross):
		return fault.Wrap(fault.Unavailable, err, "EST %s at %s: server redirected to %s; not followed", op, where, cross.to)
	case errors.Is(err, errTooManyRedirects):
		return fault.Wrap(fault.Unavailable, err, "EST %s at %s: too many redirects", op, where)
	}
	return err
}

// statusError maps an unexpected HTTP status to a fault kind (RFC 7030 4.2.3),
// quoting the server without the credentials auth sent.
func (c *Client) statusError(op string, r *response, auth Auth) error {
	where := c.endpoint(op)
	reason := serverReason(r, append(auth.secrets(), c.cfg.Secrets...)...)
	code := r.Status
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

// serverReason returns ": server says \"...\"" for a text/plain (or
// untyped) error body, printable, short and without secrets, or "" when
// there is none.
func serverReason(r *response, secrets ...string) string {
	if len(r.Body) == 0 || r.Header.Get("Content-Type") != "" && !cloudhttp.IsMediaType(r.Header, "text/plain") {
		return ""
	}
	if cloudhttp.Sanitize(r.Body, cloudhttp.MaxReasonLen) == "" {
		return ""
	}
	return ": server says " + cloudhttp.Quote(r.Body, secrets...)
}

// secrets are the forms of the Basic credentials a server might quote
// back: the password and the header's base64 of user:password.
func (a Auth) secrets() []string {
	if a.Password == "" {
		return nil
	}
	return []string{a.Password, base64.StdEncoding.EncodeToString([]byte(a.Username + ":" + a.Password))}
}

// checkMediaType checks Content-Type against want, ignoring parameters
// (RFC 8951: smime-type may be missing) and case.
func checkMediaType(h http.Header, want ...string) error {
	return cloudhttp.CheckMediaType(h, want...)
}

// retryAfter reads a 202's Retry-After (delta-seconds or HTTP-date) and
// clamps it to [minRetryAfter, MaxRetryAfter]. An HTTP-date is measured
// against the response's Date when present, so clock skew between device
// and server does not stretch or shrink the wait.
func (c *Client) retryAfter(h http.Header) time.Duration {
	return cloudhttp.RetryAfter(h, c.now(), defaultRetryAfter, minRetryAfter, c.cfg.MaxRetryAfter)
}
