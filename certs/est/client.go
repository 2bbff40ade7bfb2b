// Package est is the Enrollment over Secure Transport client (RFC 7030 as
// updated by RFC 8951) the Certificates service uses to enroll and renew.
package est

import (
	"cmp"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/cloudhttp"
)

// Defaults for the zero values of Config.
const (
	DefaultTimeout       = 30 * time.Second
	DefaultMaxRetryAfter = 10 * time.Minute
	DefaultMaxAttempts   = 10
)

// EST operation path segments (RFC 7030 3.2.2).
const (
	opCACerts        = "cacerts"
	opCSRAttrs       = "csrattrs"
	opSimpleEnroll   = "simpleenroll"
	opSimpleReenroll = "simplereenroll"
)

// Auth is how the client proves who it is to the EST server for one call.
type Auth struct {
	// Username and Password are sent as HTTP Basic credentials (RFC 7030
	// 3.2.3), preemptively and only over TLS. Empty Username sends none.
	Username, Password string
	// ClientCert is presented for TLS client authentication (RFC 7030
	// 3.3.2). Its PrivateKey must be a crypto.Signer; it may be a handle to
	// a key held by another process.
	ClientCert *tls.Certificate
}

// Config configures a Client. Zero values take the documented defaults.
type Config struct {
	// URL is the EST base, e.g. "https://est.example:8443/.well-known/est".
	// It must be https: EST runs only over TLS (RFC 7030 3.3).
	URL string
	// Label is the optional CA label path segment (RFC 7030 3.2.2).
	Label string
	// TrustAnchors verifies the server (explicit trust anchors, RFC 7030
	// 3.6.1); nil uses the system roots. Verification is never skipped.
	TrustAnchors *x509.CertPool
	// Timeout bounds each HTTP request, body included (default 30s).
	Timeout time.Duration
	// MaxRetryAfter caps the wait a 202 Retry-After can ask for (default 10 min).
	MaxRetryAfter time.Duration
	// MaxAttempts is how many enrollment requests are sent while the server
	// keeps answering 202 before giving up (default 10).
	MaxAttempts int
	// Sleep waits between polls; nil sleeps for real and returns early with
	// ctx.Err() when ctx ends. Tests inject a recorder.
	Sleep func(ctx context.Context, d time.Duration) error
	// Secrets are texts the requests carry that the client's errors never
	// repeat when a server quotes them back (a challenge password in the
	// CSR), besides the Basic credentials it always leaves out.
	Secrets []string
}

// Client talks to one EST server. It is safe for concurrent use.
type Client struct {
	base *url.URL // scheme, host and path up to and including the label
	cfg  Config
	// now reads the clock for HTTP-date Retry-After values without a Date header.
	now func() time.Time
}

// New checks cfg and returns a client for it.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fault.Wrap(fault.InvalidArgs, err, "EST URL %q is not a valid URL", cfg.URL)
	}
	switch {
	case u.Scheme == "http":
		return nil, fault.New(fault.InvalidArgs, "EST URL %q uses plain http; EST requires https (RFC 7030 3.3)", cfg.URL)
	case u.Scheme != "https":
		return nil, fault.New(fault.InvalidArgs, "EST URL %q must start with https://", cfg.URL)
	case u.Host == "" || u.Hostname() == "":
		return nil, fault.New(fault.InvalidArgs, "EST URL %q has no host", cfg.URL)
	case u.User != nil:
		// Never echo the URL here: its userinfo may hold a password.
		return nil, fault.New(fault.InvalidArgs, "EST URL for host %q embeds credentials; pass them in Auth instead", u.Host)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, fault.New(fault.InvalidArgs, "EST URL %q must not have a query or fragment", cfg.URL)
	}
	if err := checkLabel(cfg.Label); err != nil {
		return nil, err
	}
	if err := cmp.Or(
		cloudhttp.Default("EST", "timeout", &cfg.Timeout, DefaultTimeout),
		cloudhttp.Default("EST", "MaxRetryAfter", &cfg.MaxRetryAfter, DefaultMaxRetryAfter),
		cloudhttp.Default("EST", "MaxAttempts", &cfg.MaxAttempts, DefaultMaxAttempts),
	); err != nil {
		return nil, err
	}
	if cfg.Sleep == nil {
		cfg.Sleep = cloudhttp.Sleep
	}
	base := &url.URL{Scheme: "https", Host: u.Host, Path: strings.TrimRight(u.Path, "/")}
	if cfg.Label != "" {
		base.Path += "/" + cfg.Label
	}
	return &Client{base: base, cfg: cfg, now: time.Now}, nil
}

// checkLabel accepts a label made of RFC 3986 unreserved characters, so it
// is one path segment that needs no escaping and cannot climb the path.
func checkLabel(label string) error {
	if label == "" {
		return nil
	}
	if label == "." || label == ".." {
		return fault.New(fault.InvalidArgs, "EST label %q is not a usable path segment", label)
	}
	for _, r := range label {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			r == '-' || r == '.' || r == '_' || r == '~'
		if !ok {
			return fault.New(fault.InvalidArgs, "EST label %q may hold only letters, digits and -._~", label)
		}
	}
	return nil
}

// endpoint returns the URL of an EST operation.
func (c *Client) endpoint(op string) string {
	u := *c.base
	u.Path += "/" + op
	return u.String()
}

// CACerts fetches the CA certificates (RFC 7030 4.1), in the server's order.
func (c *Client) CACerts(ctx context.Context, auth Auth) ([]*x509.Certificate, error) {
	resp, err := c.get(ctx, auth, opCACerts)
	if err != nil {
		return nil, err
	}
	if resp.Status != http.StatusOK {
		return nil, c.statusError(opCACerts, resp, auth)
	}
	return c.parseCertsResponse(opCACerts, resp)
}

// CSRAttrs fetches the attributes the server wants in a CSR (RFC 7030 4.5).
// It returns nil, nil when the server has none (204, 404 or an empty body).
func (c *Client) CSRAttrs(ctx context.Context, auth Auth) (*CSRAttrs, error) {
	resp, err := c.get(ctx, auth, opCSRAttrs)
	if err != nil {
		return nil, err
	}
	switch resp.Status {
	case http.StatusOK:
	case http.StatusNoContent, http.StatusNotFound:
		return nil, nil
	default:
		return nil, c.statusError(opCSRAttrs, resp, auth)
	}
	if len(strings.TrimSpace(string(resp.Body))) == 0 {
		return nil, nil
	}
	if err := checkMediaType(resp.Header, "application/csrattrs"); err != nil {
		return nil, c.invalidResponse(opCSRAttrs, err)
	}
	attrs, err := ParseCSRAttrs(resp.Body)
	if err != nil {
		return nil, c.invalidResponse(opCSRAttrs, err)
	}
	return attrs, nil
}

// get sends one GET of op with auth's identity.
func (c *Client) get(ctx context.Context, auth Auth, op string) (*response, error) {
	hc, err := c.httpClient(auth)
	if err != nil {
		return nil, err
	}
	defer hc.CloseIdleConnections()
	return c.roundTrip(ctx, hc, auth, op, http.MethodGet, nil)
}

// SimpleEnroll asks for a certificate for csrDER (DER PKCS#10, RFC 7030
// 4.2.1). It returns the certificate for the CSR's key first, then the rest
// of what the server sent, issuers in chain order where they link up.
func (c *Client) SimpleEnroll(ctx context.Context, auth Auth, csrDER []byte) ([]*x509.Certificate, error) {
	return c.enroll(ctx, auth, opSimpleEnroll, csrDER)
}

// SimpleReenroll renews a certificate (RFC 7030 4.2.2); the server usually
// expects auth.ClientCert to be the certificate being renewed. The result is
// ordered as for SimpleEnroll.
func (c *Client) SimpleReenroll(ctx context.Context, auth Auth, csrDER []byte) ([]*x509.Certificate, error) {
	return c.enroll(ctx, auth, opSimpleReenroll, csrDER)
}

func (c *Client) enroll(ctx context.Context, auth Auth, op string, csrDER []byte) ([]*x509.Certificate, error) {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fault.Wrap(fault.InvalidArgs, err, "CSR for EST %s is not a valid DER PKCS#10 request", op)
	}
	hc, err := c.httpClient(auth)
	if err != nil {
		return nil, err
	}
	defer hc.CloseIdleConnections()
	// RFC 8951 3.2: base64 (RFC 4648), no Content-Transfer-Encoding. One
	// line without breaks is the plainest form every decoder accepts.
	body := []byte(base64.StdEncoding.EncodeToString(csrDER))
	for attempt := 1; ; attempt++ {
		resp, err := c.roundTrip(ctx, hc, auth, op, http.MethodPost, body)
		if err != nil {
			return nil, err
		}
		switch resp.Status {
		case http.StatusOK:
			certs, err := c.parseCertsResponse(op, resp)
			if err != nil {
				return nil, err
			}
			return orderForKey(csr, certs)
		case http.StatusAccepted:
			if attempt >= c.cfg.MaxAttempts {
				return nil, fault.New(fault.Unavailable, "EST server %s deferred enrollment %d times; giving up", c.endpoint(op), attempt)
			}
			wait := c.retryAfter(resp.Header)
			if err := c.cfg.Sleep(ctx, wait); err != nil {
				return nil, fault.Wrap(fault.Unavailable, err, "EST %s at %s: stopped waiting %v to poll a deferred enrollment: %v", op, c.endpoint(op), wait, err)
			}
		default:
			return nil, c.statusError(op, resp, auth)
		}
	}
}

// httpClient makes a client whose connections carry exactly auth's TLS
// identity. Each call gets its own transport so a pooled connection made
// with one client certificate can never serve a call made with another.
func (c *Client) httpClient(auth Auth) (*http.Client, error) {
	if auth.Username == "" && auth.Password != "" {
		return nil, fault.New(fault.InvalidArgs, "EST auth has a password but no username")
	}
	if strings.ContainsRune(auth.Username, ':') {
		return nil, fault.New(fault.InvalidArgs, "EST username must not contain ':' (RFC 7617)")
	}
	if hasControl(auth.Username) || hasControl(auth.Password) {
		return nil, fault.New(fault.InvalidArgs, "EST username or password contains control characters")
	}
	if cert := auth.ClientCert; cert != nil {
		if len(cert.Certificate) == 0 {
			return nil, fault.New(fault.InvalidArgs, "EST client certificate has no certificate data")
		}
		if _, ok := cert.PrivateKey.(crypto.Signer); !ok {
			return nil, fault.New(fault.InvalidArgs, "EST client certificate's private key (%T) cannot sign", cert.PrivateKey)
		}
	}
	return cloudhttp.NewClient(cloudhttp.Options{
		Anchors: c.cfg.TrustAnchors, Cert: auth.ClientCert, Timeout: c.cfg.Timeout,
		MaxIdleConnsPerHost: 1,
		// Some servers ask for the client certificate only on the
		// enrollment paths, by renegotiating a TLS 1.2 session.
		Renegotiate:   true,
		CheckRedirect: c.checkRedirect,
	}), nil
}

// checkRedirect follows redirects only within the server's origin (RFC 7030
// section 3.2.1 leaves others to the user); Basic credentials are then resent.
func (c *Client) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errTooManyRedirects
	}
	if req.URL.Scheme != "https" || !strings.EqualFold(req.URL.Host, c.base.Host) {
		return &crossOriginError{to: req.URL.Scheme + "://" + req.URL.Host}
	}
	return nil
}

var errTooManyRedirects = errors.New("too many redirects")

type crossOriginError struct{ to string }

func (e *crossOriginError) Error() string { return "redirect to another origin " + e.to }

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return true
		}
	}
	return false
}
