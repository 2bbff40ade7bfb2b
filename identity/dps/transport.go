package dps

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/identity/sas"
	"github.com/edgev2/edgev2/internal/cloudhttp"
)

// MaxResponseSize caps a DPS response body; a registration result is well
// under a KiB plus the allocation payload.
const MaxResponseSize = 1 << 20

// call sends one request, retrying on 429 after the server's Retry-After,
// and returns the parsed operation and the Retry-After for the next poll.
func (c *client) call(ctx context.Context, what, method, path string, body []byte) (*Operation, time.Duration, error) {
	for {
		resp, err := c.roundTrip(ctx, what, method, path, body)
		if err != nil {
			return nil, 0, err
		}
		switch {
		case resp.Status == http.StatusOK || resp.Status == http.StatusAccepted:
			op, err := ParseOperation(resp.Body)
			if err != nil {
				return nil, 0, c.invalidResponse(what, resp, err)
			}
			if op.RegistrationState != nil && op.RegistrationState.RegistrationID != "" &&
				!strings.EqualFold(op.RegistrationState.RegistrationID, c.cfg.RegistrationID) {
				return nil, 0, c.invalidResponse(what, resp, fault.New(fault.InvalidArgs,
					"it is for registration ID %q, not %q", cloudhttp.Sanitize([]byte(op.RegistrationState.RegistrationID), 80), c.cfg.RegistrationID))
			}
			return op, retryAfter(resp.Header, c.cfg.Now()), nil
		case resp.Status == http.StatusTooManyRequests:
			if err := c.wait(ctx, retryAfter(resp.Header, c.cfg.Now()), what+" throttled (HTTP 429)"+c.serverReason(resp)); err != nil {
				return nil, 0, err
			}
		default:
			return nil, 0, c.statusError(what, resp)
		}
	}
}

type response = cloudhttp.Response

// roundTrip sends one request and reads the whole answer within
// cfg.Timeout and MaxResponseSize. A SAS token is made fresh for each.
func (c *client) roundTrip(ctx context.Context, what, method, path string, body []byte) (*response, error) {
	return c.roundTripAuth(ctx, what, method, path, body, true)
}

// roundTripAuth is roundTrip, with the SAS token only when withSAS.
func (c *client) roundTripAuth(ctx context.Context, what, method, path string, body []byte, withSAS bool) (*response, error) {
	var auth string
	if c.cfg.SAS != nil && withSAS {
		tok, err := sas.Token(ctx, c.cfg.SAS, sas.DPSResource(c.cfg.IDScope, c.cfg.RegistrationID),
			c.cfg.Now().Add(c.cfg.TokenTTL), sas.DPSKeyName)
		if err != nil {
			return nil, fault.Wrap(fault.KindOf(err), err, "DPS %s for %q: cannot make a SAS token: %s", what, c.cfg.RegistrationID, fault.Message(err))
		}
		auth = tok
		c.sigs = append(c.sigs, sas.SignatureForms(tok)...)
	}
	target := c.base + path + "?api-version=" + c.cfg.APIVersion
	req, err := cloudhttp.NewJSONRequest(ctx, method, target, body, UserAgent, auth)
	if err != nil {
		return nil, fault.Wrap(fault.Failed, err, "DPS %s: cannot build request", what)
	}
	call := cloudhttp.Call{Service: "DPS", Host: c.host, What: what, Timeout: c.cfg.Timeout, Identity: c.cfg.RegistrationID}
	r, err := cloudhttp.RoundTrip(c.hc, call, req, MaxResponseSize)
	if err != nil {
		return nil, err
	}
	if err := r.Oversize(); err != nil {
		return nil, c.invalidResponse(what, r, err)
	}
	return r, nil
}

// statusError maps an HTTP error status to a fault kind, with DPS's reason.
func (c *client) statusError(what string, r *response) error {
	reason := c.serverReason(r)
	switch code := r.Status; {
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return fault.New(fault.NotAuthorized, "DPS %s for %q at %s: not authorized (HTTP %d)%s", what, c.cfg.RegistrationID, c.host, code, reason)
	case code == http.StatusNotFound:
		return fault.New(fault.NotFound, "DPS %s for %q at %s: not found (HTTP 404; check the ID scope and registration ID)%s", what, c.cfg.RegistrationID, c.host, reason)
	case code == http.StatusBadRequest && len(c.cfg.CSR) > 0 && dpsCode(r) == "400001":
		return fault.Wrap(fault.InvalidArgs, ErrAPIVersion, "DPS %s for %q at %s does not support api-version %s, which certificate issuance needs%s (fix: use a DPS instance with Azure Device Registry certificate management, or remove operational_cert)", what, c.cfg.RegistrationID, c.host, c.cfg.APIVersion, reason)
	case code == http.StatusBadRequest && len(c.cfg.CSR) > 0 && what == "register":
		return fault.Wrap(fault.InvalidArgs, ErrCSRRefused, "DPS %s for %q at %s refused the registration with its certificate signing request (HTTP 400)%s (fix: check the enrollment's credential policy: key type, subject CN = registration id)", what, c.cfg.RegistrationID, c.host, reason)
	case code == http.StatusBadRequest:
		return fault.New(fault.InvalidArgs, "DPS %s for %q at %s: request rejected (HTTP 400)%s", what, c.cfg.RegistrationID, c.host, reason)
	case code == http.StatusRequestTimeout || code >= 500 && code <= 599:
		return fault.New(fault.Unavailable, "DPS %s at %s: service unavailable (HTTP %d)%s", what, c.host, code, reason)
	default:
		return fault.New(fault.Failed, "DPS %s for %q at %s: unexpected HTTP status %d%s", what, c.cfg.RegistrationID, c.host, code, reason)
	}
}

// invalidResponse reports a success status whose body cannot be used.
func (c *client) invalidResponse(what string, r *response, cause error) error {
	return fault.Wrap(fault.Failed, cause, "DPS sent an invalid response to %s at %s: %s%s", what, c.host, fault.Message(cause), cloudhttp.ContentTypeHint(r.Header))
}

// serverReason renders DPS's error body ({errorCode, trackingId, message})
// or a short text body as ": DPS says ...", or "" when there is none;
// the signatures of the tokens sent are scrubbed from it.
func (c *client) serverReason(r *response) string {
	body := bytes.TrimSpace(r.Body)
	if len(body) == 0 {
		return ""
	}
	if body[0] == '{' {
		var e serviceError
		if json.Unmarshal(body, &e) != nil || (e.Message == "" && e.ErrorCode == "") {
			return ""
		}
		s := ": DPS says"
		if e.ErrorCode != "" {
			s += " " + cloudhttp.Sanitize([]byte(e.ErrorCode.String()), 20)
		}
		if e.Message != "" {
			s += " " + cloudhttp.Quote([]byte(e.Message), c.sigs...)
		}
		if e.TrackingID != "" {
			s += " (tracking ID " + cloudhttp.Sanitize([]byte(e.TrackingID), 80) + ")"
		}
		return s
	}
	return cloudhttp.TextReason("DPS", r, c.sigs...)
}

// dpsCode is the errorCode of DPS's error body, or "".
func dpsCode(r *response) string {
	var e serviceError
	if json.Unmarshal(bytes.TrimSpace(r.Body), &e) != nil {
		return ""
	}
	return e.ErrorCode.String()
}

// retryAfter reads Retry-After (seconds or HTTP-date), defaulting to
// DefaultPollInterval and clamped to [0, MaxRetryAfter]; 0 is kept (see
// pollWait for the floor that stops a hot loop).
func retryAfter(h http.Header, now time.Time) time.Duration {
	return cloudhttp.RetryAfter(h, now, DefaultPollInterval, 0, MaxRetryAfter)
}

func sanitize(b []byte, max int) string { return cloudhttp.Sanitize(b, max) }

func printable(s string) string { return cloudhttp.Printable(s) }
