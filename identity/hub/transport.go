package hub

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/edgev2/edgev2/identity/sas"
	"github.com/edgev2/edgev2/internal/fault"
	"github.com/edgev2/edgev2/internal/netfault"
)

// MaxResponseSize caps a response body; a device has at most a few dozen
// modules of under a KiB each.
const MaxResponseSize = 1 << 20

const (
	maxReasonLen    = 200
	contentTypeJSON = "application/json; charset=utf-8"
	acceptJSON      = "application/json"
)

func newHTTPClient(anchors *x509.CertPool, cert *tls.Certificate, timeout time.Duration) *http.Client {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: anchors}
	if cert != nil {
		tlsCfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		TLSClientConfig:       tlsCfg,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

type request struct {
	what    string // for messages: `create module "m"`
	method  string
	module  string // "" with list
	list    bool
	body    []byte
	ifMatch string
	secrets []string // never let these reach an error message
}

type response struct {
	status int
	header http.Header
	body   []byte
	// secrets are the token signature and keys of the request.
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
		if p, err := sas.ParseToken(tok); err == nil {
			secrets = append(secrets, tok[strings.Index(tok, "&sig=")+5:strings.Index(tok, "&se=")], string(p.Signature))
		}
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var rd io.Reader
	if r.body != nil {
		rd = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, "https://"+c.host+path+"?api-version="+c.cfg.APIVersion, rd)
	if err != nil {
		return nil, fault.Wrap(fault.Failed, err, "IoT Hub %s: cannot build request", r.what)
	}
	req.Header.Set("Accept", acceptJSON)
	req.Header.Set("User-Agent", UserAgent)
	if r.body != nil {
		req.Header.Set("Content-Type", contentTypeJSON)
	}
	if r.ifMatch != "" {
		req.Header.Set("If-Match", r.ifMatch)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	hr, err := c.hc.Do(req)
	if err != nil {
		return nil, c.transportError(parent, ctx, r.what, err)
	}
	defer hr.Body.Close()
	data, err := io.ReadAll(io.LimitReader(hr.Body, MaxResponseSize+1))
	if err != nil {
		return nil, c.transportError(parent, ctx, r.what, err)
	}
	resp := &response{status: hr.StatusCode, header: hr.Header, body: data, secrets: secrets}
	if len(data) > MaxResponseSize {
		return nil, c.invalidResponse(r.what, resp, fault.New(fault.InvalidArgs, "body is larger than %d bytes", MaxResponseSize))
	}
	if resp.status < 200 || resp.status > 299 {
		return nil, c.statusError(r.what, resp)
	}
	return resp, nil
}

// transportError classifies a failure to get a whole response.
func (c *Client) transportError(parent, ctx context.Context, what string, err error) error {
	return netfault.Transport(parent, ctx, netfault.Call{Service: "IoT Hub", Host: c.host, What: what, Timeout: c.cfg.Timeout, Identity: c.cfg.DeviceID}, err)
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
	switch code := r.status; {
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
	return fault.New(fault.Failed, "IoT Hub %s for device %q at %s: unexpected HTTP status %d%s", what, dev, c.host, r.status, reason)
}

// unexpected reports a success status the operation does not produce.
func (c *Client) unexpected(what string, r *response) error {
	return fault.New(fault.Failed, "IoT Hub %s for device %q at %s: unexpected HTTP status %d", what, c.cfg.DeviceID, c.host, r.status)
}

func (c *Client) invalidResponse(what string, r *response, cause error) error {
	hint := ""
	if ct := r.header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			hint = fmt.Sprintf(" (Content-Type %q)", sanitize([]byte(ct), 60))
		}
	}
	return fault.Wrap(fault.Failed, cause, "IoT Hub sent an invalid response to %s at %s: %s%s", what, c.host, scrub(fault.Message(cause), r.secrets), hint)
}

// hubReason renders the hub's error body as ": IoT Hub says ...".
func hubReason(r *response) (hubError, string) {
	var he hubError
	body := bytes.TrimSpace(r.body)
	if len(body) == 0 {
		return he, ""
	}
	if body[0] != '{' {
		if mt, _, err := mime.ParseMediaType(r.header.Get("Content-Type")); err == nil && mt == "text/plain" {
			if s := sanitize(body, maxReasonLen); s != "" {
				return he, ": IoT Hub says " + strconv.Quote(scrub(s, r.secrets))
			}
		}
		return he, ""
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
		parts = append(parts, strconv.Quote(scrub(sanitize([]byte(msg), maxReasonLen), r.secrets)))
	}
	if he.TrackingID != "" {
		parts = append(parts, "(tracking ID "+sanitize([]byte(he.TrackingID), 80)+")")
	} else if he.ExceptionMessage != "" {
		parts = append(parts, "("+scrub(sanitize([]byte(he.ExceptionMessage), 120), r.secrets)+")")
	}
	if len(parts) == 0 {
		return he, ""
	}
	return he, ": IoT Hub says " + strings.Join(parts, " ")
}

var sigRE = regexp.MustCompile(`(?i)(sig=)[^&\s"]*`)

// scrub removes SAS signatures and the given secrets from server text.
func scrub(s string, secrets []string) string {
	s = sigRE.ReplaceAllString(s, "${1}<redacted>")
	for _, sec := range secrets {
		if len(sec) >= 4 {
			s = strings.ReplaceAll(s, sec, "<redacted>")
		}
	}
	return s
}

func sanitize(b []byte, max int) string {
	var sb strings.Builder
	n, space := 0, false
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		b = b[size:]
		if r == utf8.RuneError || !unicode.IsPrint(r) || unicode.IsSpace(r) {
			space = sb.Len() > 0
			continue
		}
		if n >= max {
			sb.WriteString("...")
			break
		}
		if space {
			sb.WriteByte(' ')
			n++
			space = false
		}
		sb.WriteRune(r)
		n++
	}
	return sb.String()
}

func printable(s string) string { return sanitize([]byte(s), 130) }
