package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/identity/sas"
	"github.com/edgev2/edgev2/internal/cloudhttp"
)

// MaxResponseSize caps a response body; a device has at most a few dozen
// modules of under a KiB each.
const MaxResponseSize = 1 << 20

type request struct {
	what    string // for messages: `create module "m"`
	method  string
	module  string // "" with list
	list    bool
	body    []byte
	ifMatch string
	secrets []string // never let these reach an error message
}

// response is a whole response and the secrets of its request (the token
// signature and keys), which never reach an error message.
type response struct {
	*cloudhttp.Response
	secrets []string
}

// do sends one request and returns a 2xx response; anything else becomes
// an error of the matching kind.
func (c *Client) do(ctx context.Context, r request) (*response, error) {
	path := "/devices/" + sas.Escape(c.cfg.DeviceID) + "/modules"
	if !r.list {
		path += "/" + sas.Escape(r.module)
	}
	var auth string
	secrets := r.secrets
	if c.cfg.SAS != nil {
		tok, err := sas.Token(ctx, c.cfg.SAS, sas.DeviceResource(c.cfg.HubHost, c.cfg.DeviceID), c.cfg.Now().Add(c.cfg.TokenTTL), "")
		if err != nil {
			return nil, fault.Wrap(fault.KindOf(err), err, "IoT Hub %s: cannot make a SAS token for device %q: %s", r.what, c.cfg.DeviceID, fault.Message(err))
		}
		auth = tok
		secrets = append(secrets, sas.SignatureForms(tok)...)
	}
	req, err := cloudhttp.NewJSONRequest(ctx, r.method, "https://"+c.host+path+"?api-version="+c.cfg.APIVersion, r.body, UserAgent, auth)
	if err != nil {
		return nil, fault.Wrap(fault.Failed, err, "IoT Hub %s: cannot build request", r.what)
	}
	if r.ifMatch != "" {
		req.Header.Set("If-Match", r.ifMatch)
	}
	call := cloudhttp.Call{Service: "IoT Hub", Host: c.host, What: r.what, Timeout: c.cfg.Timeout, Identity: c.cfg.DeviceID}
	hr, err := cloudhttp.RoundTrip(c.hc, call, req, MaxResponseSize)
	if err != nil {
		return nil, err
	}
	resp := &response{Response: hr, secrets: secrets}
	if err := hr.Oversize(); err != nil {
		return nil, c.invalidResponse(r.what, resp, err)
	}
	if resp.Status < 200 || resp.Status > 299 {
		return nil, c.statusError(r.what, resp)
	}
	return resp, nil
}

// hubError is IoT Hub's error body in its old ({Message, ExceptionMessage})
// and new ({errorCode, trackingId, message}) shapes; edgeHub adds
// networkError when it relays for a nested device. encoding/json matches
// names case-insensitively, so "message" fills Message.
type hubError struct {
	Message          string          `json:"Message"`
	ErrorMessage     string          `json:"errorMessage"`
	ExceptionMessage string          `json:"ExceptionMessage"`
	ErrorCode        json.RawMessage `json:"errorCode"`
	TrackingID       string          `json:"trackingId"`
	NetworkError     bool            `json:"networkError"`
}

// statusError maps an HTTP error status to a fault kind, with the hub's reason.
func (c *Client) statusError(what string, r *response) error {
	he, reason := hubReason(r)
	dev := c.cfg.DeviceID
	switch code := r.Status; {
	case he.NetworkError:
		return fault.New(fault.Unavailable, "IoT Hub %s for device %q via %s: the gateway cannot reach IoT Hub (HTTP %d)%s", what, dev, c.host, code, reason)
	case code == http.StatusNotFound:
		return fault.New(fault.NotFound, "IoT Hub %s for device %q: not found (HTTP 404)%s", what, dev, reason)
	case code == http.StatusConflict:
		return fault.New(fault.AlreadyExists, "IoT Hub %s for device %q: already exists (HTTP 409)%s", what, dev, reason)
	case code == http.StatusPreconditionFailed:
		return fault.New(fault.AlreadyExists, "IoT Hub %s for device %q: the module changed since its etag was read; read it again (HTTP 412)%s", what, dev, reason)
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return fault.New(fault.NotAuthorized, "IoT Hub %s for device %q at %s: not authorized (HTTP %d)%s", what, dev, c.host, code, reason)
	case code == http.StatusBadRequest:
		return fault.New(fault.InvalidArgs, "IoT Hub %s for device %q: request rejected (HTTP 400)%s", what, dev, reason)
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500 && code <= 599:
		return fault.New(fault.Unavailable, "IoT Hub %s at %s: service unavailable (HTTP %d)%s", what, c.host, code, reason)
	}
	return fault.New(fault.Failed, "IoT Hub %s for device %q at %s: unexpected HTTP status %d%s", what, dev, c.host, r.Status, reason)
}

// unexpected reports a success status the operation does not produce.
func (c *Client) unexpected(what string, r *response) error {
	return fault.New(fault.Failed, "IoT Hub %s for device %q at %s: unexpected HTTP status %d", what, c.cfg.DeviceID, c.host, r.Status)
}

func (c *Client) invalidResponse(what string, r *response, cause error) error {
	return fault.Wrap(fault.Failed, cause, "IoT Hub sent an invalid response to %s at %s: %s%s", what, c.host, cloudhttp.Scrub(fault.Message(cause), r.secrets...), cloudhttp.ContentTypeHint(r.Header))
}

// hubReason renders the hub's error body as ": IoT Hub says ...".
func hubReason(r *response) (hubError, string) {
	var he hubError
	body := bytes.TrimSpace(r.Body)
	if len(body) == 0 {
		return he, ""
	}
	if body[0] != '{' {
		return he, cloudhttp.TextReason("IoT Hub", r.Response, r.secrets...)
	}
	if json.Unmarshal(body, &he) != nil {
		return hubError{}, ""
	}
	msg := he.Message
	if msg == "" {
		msg = he.ErrorMessage
	}
	var parts []string
	if code := bytes.Trim(he.ErrorCode, `"`); len(code) > 0 && string(code) != "null" {
		parts = append(parts, sanitize(code, 40))
	}
	if msg != "" {
		parts = append(parts, cloudhttp.Quote([]byte(msg), r.secrets...))
	}
	if he.TrackingID != "" {
		parts = append(parts, "(tracking ID "+sanitize([]byte(he.TrackingID), 80)+")")
	} else if he.ExceptionMessage != "" {
		parts = append(parts, "("+cloudhttp.Scrub(cloudhttp.Sanitize([]byte(he.ExceptionMessage), 120), r.secrets...)+")")
	}
	if len(parts) == 0 {
		return he, ""
	}
	return he, ": IoT Hub says " + strings.Join(parts, " ")
}

func sanitize(b []byte, max int) string { return cloudhttp.Sanitize(b, max) }

func printable(s string) string { return cloudhttp.Printable(s) }
