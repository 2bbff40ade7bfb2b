package dps

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

// MaxResponseSize caps a DPS response body; a registration result is well
// under a KiB plus the allocation payload.
const MaxResponseSize = 1 << 20

// maxReasonLen caps the server text quoted in an error.
const maxReasonLen = 200

// Header values of the Azure IoT C SDK's HTTP provisioning transport
// (prov_transport_http_client.c).
const (
	contentTypeJSON = "application/json; charset=utf-8"
	acceptJSON      = "application/json"
)

// newHTTPClient makes a client whose connections carry exactly cert (or no
// client certificate) and verify the server against anchors.
func newHTTPClient(anchors *x509.CertPool, cert *tls.Certificate, timeout time.Duration) *http.Client {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: anchors}
	if cert != nil {
		// GetClientCertificate, not Certificates: offered whatever CA
		// list the server names, and the key is used only via crypto.Signer.
		tlsCfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		TLSClientConfig:       tlsCfg,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		MaxIdleConnsPerHost:   1,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{
		Transport: tr,
		// DPS does not redirect; a 3xx is reported, not followed.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// call sends one request, retrying on 429 after the server's Retry-After,
// and returns the parsed operation and the Retry-After for the next poll.
func (c *client) call(ctx context.Context, what, method, path string, body []byte) (*Operation, time.Duration, error) {
	for {
		resp, err := c.roundTrip(ctx, what, method, path, body)
		if err != nil {
			return nil, 0, err
		}
		switch {
		case resp.status == http.StatusOK || resp.status == http.StatusAccepted:
			op, err := ParseOperation(resp.body)
			if err != nil {
				return nil, 0, c.invalidResponse(what, resp, err)
			}
			if op.RegistrationState != nil && op.RegistrationState.RegistrationID != "" &&
				!strings.EqualFold(op.RegistrationState.RegistrationID, c.cfg.RegistrationID) {
				return nil, 0, c.invalidResponse(what, resp, fault.New(fault.InvalidArgs,
					"it is for registration ID %q, not %q", sanitize([]byte(op.RegistrationState.RegistrationID), 80), c.cfg.RegistrationID))
			}
			return op, retryAfter(resp.header, c.cfg.Now()), nil
		case resp.status == http.StatusTooManyRequests:
			if err := c.wait(ctx, retryAfter(resp.header, c.cfg.Now()), what+" throttled (HTTP 429)"+serverReason(resp)); err != nil {
				return nil, 0, err
			}
		default:
			return nil, 0, c.statusError(what, resp)
		}
	}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

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
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	target := c.base + path + "?api-version=" + c.cfg.APIVersion
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, fault.Wrap(fault.Failed, err, "DPS %s: cannot build request", what)
	}
	req.Header.Set("Accept", acceptJSON)
	req.Header.Set("User-Agent", UserAgent)
	if body != nil {
		req.Header.Set("Content-Type", contentTypeJSON)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.transportError(parent, ctx, what, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseSize+1))
	if err != nil {
		return nil, c.transportError(parent, ctx, what, err)
	}
	r := &response{status: resp.StatusCode, header: resp.Header, body: data}
	if len(data) > MaxResponseSize {
		return nil, c.invalidResponse(what, r, fault.New(fault.InvalidArgs, "body is larger than %d bytes", MaxResponseSize))
	}
	return r, nil
}

// transportError classifies a failure to get a whole response.
func (c *client) transportError(parent, ctx context.Context, what string, err error) error {
	return netfault.Transport(parent, ctx, netfault.Call{Service: "DPS", Host: c.host, What: what, Timeout: c.cfg.Timeout, Identity: c.cfg.RegistrationID}, err)
}

// statusError maps an HTTP error status to a fault kind, with DPS's reason.
func (c *client) statusError(what string, r *response) error {
	reason := serverReason(r)
	switch code := r.status; {
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
	hint := ""
	if ct := r.header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			hint = fmt.Sprintf(" (Content-Type %q)", sanitize([]byte(ct), 60))
		}
	}
	return fault.Wrap(fault.Failed, cause, "DPS sent an invalid response to %s at %s: %s%s", what, c.host, fault.Message(cause), hint)
}

// serverReason renders DPS's error body ({errorCode, trackingId, message})
// or a short text body as ": DPS says ...", or "" when there is none.
func serverReason(r *response) string {
	body := bytes.TrimSpace(r.body)
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
			s += " " + sanitize([]byte(e.ErrorCode.String()), 20)
		}
		if e.Message != "" {
			s += " " + quote(scrub(sanitize([]byte(e.Message), maxReasonLen)))
		}
		if e.TrackingID != "" {
			s += " (tracking ID " + sanitize([]byte(e.TrackingID), 80) + ")"
		}
		return s
	}
	if mt, _, err := mime.ParseMediaType(r.header.Get("Content-Type")); err != nil || mt != "text/plain" {
		return ""
	}
	if s := sanitize(body, maxReasonLen); s != "" {
		return ": DPS says " + quote(scrub(s))
	}
	return ""
}

// dpsCode is the errorCode of DPS's error body, or "".
func dpsCode(r *response) string {
	var e serviceError
	if json.Unmarshal(bytes.TrimSpace(r.body), &e) != nil {
		return ""
	}
	return e.ErrorCode.String()
}

// retryAfter reads Retry-After (seconds or HTTP-date), defaulting to
// DefaultPollInterval and clamped to [1s, MaxRetryAfter].
func retryAfter(h http.Header, now time.Time) time.Duration {
	d := DefaultPollInterval
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v != "" && strings.Trim(v, "0123456789") == "" {
		if secs, err := strconv.ParseUint(v, 10, 32); err == nil {
			d = time.Duration(secs) * time.Second
		} else {
			d = MaxRetryAfter
		}
	} else if at, err := http.ParseTime(v); err == nil {
		if date, err := http.ParseTime(h.Get("Date")); err == nil {
			now = date
		}
		d = at.Sub(now)
	}
	return min(max(d, time.Second), MaxRetryAfter)
}

// sigRE finds a SAS signature a server might echo back.
var sigRE = regexp.MustCompile(`(?i)(sig=)[^&\s"]*`)

// scrub removes anything that looks like a SAS signature from server text.
func scrub(s string) string { return sigRE.ReplaceAllString(s, "${1}<redacted>") }

func quote(s string) string { return strconv.Quote(s) }

// sanitize turns untrusted bytes into one printable line of at most max
// runes; invalid UTF-8, controls and whitespace runs become one space.
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
