// Package hub is the device side of IoT Hub's identity registry for module
// identities: create, read, list, update and delete a device's modules.
package hub

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/identity/hubname"
	"github.com/edgev2/edgev2/identity/sas"
	"github.com/edgev2/edgev2/internal/cloudhttp"
)

// Defaults for the zero values of Config.
const (
	// DefaultAPIVersion is the registry API version of the Azure IoT service
	// SDKs. aziot-identityd still sends 2017-11-08-preview; both are served.
	DefaultAPIVersion = "2021-04-12"
	DefaultTimeout    = 30 * time.Second
	DefaultTokenTTL   = time.Hour
)

// UserAgent is sent on every request.
const UserAgent = "edgev2-identityd/0.1 (hub)"

// Config says which hub to talk to and as which device.
type Config struct {
	// HubHost is the IoT Hub host name: a bare DNS name, reached on port
	// 443 (see package hubname; "host:port" is refused). It is the
	// audience of the device's SAS token and, unless GatewayHost is set,
	// where requests go.
	HubHost string
	// GatewayHost, when set, receives the requests instead of HubHost: a
	// parent edge device in a nested setup (a bare name too, port 443).
	GatewayHost string
	DeviceID    string
	// SAS signs with the device's symmetric key. Exactly one of SAS and
	// ClientCert must be set.
	SAS sas.Signer
	// ClientCert authenticates the device by X.509; its PrivateKey must be
	// a crypto.Signer and may be a handle to a key in the Keys service.
	ClientCert *tls.Certificate
	// TrustAnchors verifies the hub; nil uses the system roots.
	TrustAnchors *x509.CertPool
	APIVersion   string        // DefaultAPIVersion when empty
	Timeout      time.Duration // per request, body included; DefaultTimeout when 0
	Now          func() time.Time
	TokenTTL     time.Duration // lifetime of each SAS token (fresh per request)
}

// Client manages one device's module identities. It is safe for concurrent use.
type Client struct {
	cfg  Config
	host string // where requests go
	hc   *http.Client
}

// New checks cfg and returns a client for it.
func New(cfg Config) (*Client, error) {
	if err := hubname.Check("IoT Hub host", cfg.HubHost); err != nil {
		return nil, fault.New(fault.InvalidArgs, "%v", err)
	}
	if cfg.GatewayHost != "" {
		if err := hubname.Check("gateway host", cfg.GatewayHost); err != nil {
			return nil, fault.New(fault.InvalidArgs, "%v", err)
		}
	}
	if err := checkID("device", cfg.DeviceID); err != nil {
		return nil, err
	}
	if cfg.APIVersion == "" {
		cfg.APIVersion = DefaultAPIVersion
	}
	if err := cloudhttp.CheckAPIVersion("IoT Hub", cfg.APIVersion); err != nil {
		return nil, err
	}
	if err := cloudhttp.CheckCredentials("IoT Hub", fmt.Sprintf("IoT Hub client for device %q", cfg.DeviceID), "credentials", cfg.SAS != nil, cfg.ClientCert); err != nil {
		return nil, err
	}
	if err := cmp.Or(
		cloudhttp.Default("IoT Hub", "timeout", &cfg.Timeout, DefaultTimeout),
		cloudhttp.Default("IoT Hub", "TokenTTL", &cfg.TokenTTL, DefaultTokenTTL),
	); err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	host := cfg.HubHost
	if cfg.GatewayHost != "" {
		host = cfg.GatewayHost
	}
	return &Client{cfg: cfg, host: host, hc: cloudhttp.NewClient(cloudhttp.Options{
		Anchors: cfg.TrustAnchors, Cert: cfg.ClientCert, Timeout: cfg.Timeout,
		MaxIdleConnsPerHost: 2, IdleConnTimeout: 90 * time.Second, HTTP2: true,
	})}, nil
}

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// CreateModule creates module id on the device. With auth.Type "sas" and no
// keys, IoT Hub generates the keys and returns them. An existing module is
// fault.AlreadyExists (IoT Hub's 409).
func (c *Client) CreateModule(ctx context.Context, id string, auth Authentication, managedBy string) (*Module, error) {
	if err := checkID("module", id); err != nil {
		return nil, err
	}
	if err := checkAuth(id, auth); err != nil {
		return nil, err
	}
	body, err := json.Marshal(toWire(c.cfg.DeviceID, id, managedBy, auth))
	if err != nil {
		return nil, fault.Wrap(fault.Failed, err, "module %q: cannot encode the request", id)
	}
	resp, err := c.do(ctx, request{what: "create module " + quoteID(id), method: http.MethodPut, module: id, body: body, secrets: keySecrets(auth)})
	if err != nil {
		return nil, err
	}
	return c.moduleResponse(resp, id, http.StatusOK, http.StatusCreated)
}

// GetModule reads module id.
func (c *Client) GetModule(ctx context.Context, id string) (*Module, error) {
	if err := checkID("module", id); err != nil {
		return nil, err
	}
	resp, err := c.do(ctx, request{what: "get module " + quoteID(id), method: http.MethodGet, module: id})
	if err != nil {
		return nil, err
	}
	return c.moduleResponse(resp, id, http.StatusOK)
}

// ListModules reads all of the device's modules.
func (c *Client) ListModules(ctx context.Context) ([]*Module, error) {
	r := request{what: "list modules", method: http.MethodGet, list: true}
	resp, err := c.do(ctx, r)
	if err != nil {
		return nil, err
	}
	if resp.Status != http.StatusOK {
		return nil, c.unexpected(r.what, resp)
	}
	ms, err := parseModules(resp.Body)
	if err != nil {
		return nil, c.invalidResponse(r.what, resp, err)
	}
	for _, m := range ms {
		if m.DeviceID != "" && m.DeviceID != c.cfg.DeviceID {
			return nil, c.invalidResponse(r.what, resp, fault.New(fault.InvalidArgs, "module %q belongs to device %q", m.ModuleID, m.DeviceID))
		}
	}
	return ms, nil
}

// UpdateModule replaces m's managedBy and authentication. It sends If-Match
// with m.ETag, or "*" when m.ETag is empty. A module changed since m was
// read is fault.AlreadyExists (IoT Hub's 412 Precondition Failed).
func (c *Client) UpdateModule(ctx context.Context, m *Module) (*Module, error) {
	if m == nil {
		return nil, fault.New(fault.InvalidArgs, "update module: no module given")
	}
	if err := checkID("module", m.ModuleID); err != nil {
		return nil, err
	}
	if err := checkAuth(m.ModuleID, m.Authentication); err != nil {
		return nil, err
	}
	ifMatch, err := ifMatch(m.ETag)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(toWire(c.cfg.DeviceID, m.ModuleID, m.ManagedBy, m.Authentication))
	if err != nil {
		return nil, fault.Wrap(fault.Failed, err, "module %q: cannot encode the request", m.ModuleID)
	}
	resp, err := c.do(ctx, request{what: "update module " + quoteID(m.ModuleID), method: http.MethodPut, module: m.ModuleID,
		body: body, ifMatch: ifMatch, secrets: keySecrets(m.Authentication)})
	if err != nil {
		return nil, err
	}
	return c.moduleResponse(resp, m.ModuleID, http.StatusOK)
}

// DeleteModule deletes module id. etag "" deletes whatever version exists
// (If-Match: *); a non-empty etag that no longer matches is
// fault.AlreadyExists (412), and a missing module is fault.NotFound.
func (c *Client) DeleteModule(ctx context.Context, id, etag string) error {
	if err := checkID("module", id); err != nil {
		return err
	}
	ifMatch, err := ifMatch(etag)
	if err != nil {
		return err
	}
	r := request{what: "delete module " + quoteID(id), method: http.MethodDelete, module: id, ifMatch: ifMatch}
	resp, err := c.do(ctx, r)
	if err != nil {
		return err
	}
	if resp.Status != http.StatusNoContent && resp.Status != http.StatusOK {
		return c.unexpected(r.what, resp)
	}
	return nil
}

// moduleResponse parses a single-module answer and checks it is the one asked for.
func (c *Client) moduleResponse(resp *response, id string, ok ...int) (*Module, error) {
	what := "module " + quoteID(id)
	good := false
	for _, s := range ok {
		good = good || resp.Status == s
	}
	if !good {
		return nil, c.unexpected(what, resp)
	}
	m, err := ParseModule(resp.Body)
	if err != nil {
		return nil, c.invalidResponse(what, resp, err)
	}
	if m.ModuleID != id || (m.DeviceID != "" && m.DeviceID != c.cfg.DeviceID) {
		return nil, c.invalidResponse(what, resp, fault.New(fault.InvalidArgs, "it describes module %q of device %q", m.ModuleID, m.DeviceID))
	}
	if m.DeviceID == "" {
		m.DeviceID = c.cfg.DeviceID
	}
	return m, nil
}

// ifMatch renders an etag for If-Match: quoted as the Azure IoT service
// SDKs send it, or * for any version.
func ifMatch(etag string) (string, error) {
	if etag == "" || etag == "*" {
		return "*", nil
	}
	if err := checkText("etag", etag); err != nil {
		return "", err
	}
	if len(etag) > 1 && etag[0] == '"' && etag[len(etag)-1] == '"' {
		return etag, nil
	}
	for _, r := range etag {
		if r == '"' || r > 0x7e {
			return "", fault.New(fault.InvalidArgs, "etag %q is not a valid entity tag", printable(etag))
		}
	}
	return `"` + etag + `"`, nil
}

func checkAuth(id string, a Authentication) error {
	switch a.Type {
	case "", AuthSAS, AuthSelfSigned, AuthCertificateAuthority, AuthNone:
	default:
		return fault.New(fault.InvalidArgs, "module %q: authentication type %q is not sas, selfSigned, certificateAuthority or none", id, printable(a.Type))
	}
	if (len(a.PrimaryKey) > 0 || len(a.SecondaryKey) > 0) && a.Type != AuthSAS {
		return fault.New(fault.InvalidArgs, "module %q: symmetric keys given with authentication type %q", id, a.Type)
	}
	if (a.PrimaryThumbprint != "" || a.SecondaryThumbprint != "") && a.Type != AuthSelfSigned {
		return fault.New(fault.InvalidArgs, "module %q: thumbprints given with authentication type %q", id, a.Type)
	}
	for _, t := range []string{a.PrimaryThumbprint, a.SecondaryThumbprint} {
		for _, r := range t {
			if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F') {
				return fault.New(fault.InvalidArgs, "module %q: thumbprint %q is not hexadecimal", id, printable(t))
			}
		}
	}
	return nil
}

// checkID applies IoT Hub's identity rule: up to 128 characters of ASCII
// letters, digits and - : . + % _ # * ? ! ( ) , = @ $ '.
func checkID(what, id string) error {
	if id == "" {
		return fault.New(fault.InvalidArgs, "%s ID is empty", what)
	}
	if len(id) > 128 {
		return fault.New(fault.InvalidArgs, "%s ID is longer than 128 characters", what)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !ok && !bytesContains("-:.+%_#*?!(),=@$'", c) {
			return fault.New(fault.InvalidArgs, "%s ID %q may hold only letters, digits and -:.+%%_#*?!(),=@$'", what, printable(id))
		}
	}
	return nil
}

func bytesContains(set string, c byte) bool {
	for i := 0; i < len(set); i++ {
		if set[i] == c {
			return true
		}
	}
	return false
}

func quoteID(id string) string { return `"` + id + `"` }

// keySecrets lists the wire forms of keys a request carries, so a server
// echoing them back cannot get them into an error message.
func keySecrets(a Authentication) []string {
	var s []string
	for _, k := range [][]byte{a.PrimaryKey, a.SecondaryKey} {
		if len(k) > 0 {
			s = append(s, encodeKey(k))
		}
	}
	return s
}
