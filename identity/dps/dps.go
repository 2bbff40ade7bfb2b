// Package dps is the device side of the Azure IoT Hub Device Provisioning
// Service REST API: register, then poll the operation until assigned.
package dps

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/identity/sas"
	"github.com/edgev2/edgev2/internal/cloudhttp"
)

// Defaults for the zero values of Config.
const (
	DefaultEndpoint   = "https://global.azure-devices-provisioning.net"
	DefaultAPIVersion = "2021-06-01"
	DefaultTimeout    = 30 * time.Second
	DefaultMaxPolls   = 60
	DefaultTokenTTL   = time.Hour
	// DefaultPollInterval is the wait when DPS sends no Retry-After. The
	// C SDK uses 1 s, the C#, Java and Python SDKs 2 s, aziot-identityd
	// 10 s (whatever DPS says).
	DefaultPollInterval = 3 * time.Second
	// MaxRetryAfter caps the wait a Retry-After can ask for.
	MaxRetryAfter = time.Minute
)

// UserAgent is sent on every request.
const UserAgent = "edgev2-identityd/0.1 (dps)"

// Config says where and as whom to register. Zero values take the defaults.
type Config struct {
	// Endpoint is the DPS base URL (DefaultEndpoint when empty), or the
	// labcloud URL. It must be https; a path prefix is kept.
	Endpoint       string
	IDScope        string
	RegistrationID string
	APIVersion     string // DefaultAPIVersion when empty
	// SAS signs with the enrollment's symmetric key (symmetric key
	// attestation). Exactly one of SAS and ClientCert must be set.
	SAS sas.Signer
	// ClientCert is presented for X.509 attestation; its PrivateKey must
	// be a crypto.Signer and may be a handle to a key in the Keys service.
	ClientCert *tls.Certificate
	// TrustAnchors verifies DPS; nil uses the system roots.
	TrustAnchors *x509.CertPool
	// Payload is sent as the registration's custom payload (any JSON).
	Payload json.RawMessage
	// Timeout bounds each HTTP request, body included.
	Timeout time.Duration
	// MaxPolls bounds the waits (status polls and 429 retries together)
	// before Register gives up with fault.Unavailable.
	MaxPolls int
	// Sleep waits between polls; nil sleeps for real, returning early
	// with ctx.Err() when ctx ends. Tests inject a recorder.
	Sleep func(ctx context.Context, d time.Duration) error
	// Now reads the clock for token expiry; nil is time.Now.
	Now func() time.Time
	// TokenTTL is the lifetime of each SAS token (a fresh one per request).
	TokenTTL time.Duration
	// TPM, when set, is TPM attestation; SAS must sign in that TPM.
	TPM *TPM
	// CSR, when set, is a DER PKCS#10 request for an operational
	// certificate sent with the registration (APIVersion defaults to
	// APIVersionCSR then); the result must carry a certificate for its key.
	CSR []byte
}

// Result is what DPS assigned.
type Result struct {
	AssignedHub    string // IoT Hub host name
	DeviceID       string
	Substatus      string // initialAssignment, deviceDataMigrated, deviceDataReset, reprovisionedToInitialAssignment
	ETag           string
	RegistrationID string
	CreatedAt      time.Time // zero when DPS sent none or an unreadable one
	UpdatedAt      time.Time
	Payload        json.RawMessage // the allocation's returned payload, if any
	// IssuedChain is the operational certificate DPS issued for Config.CSR,
	// leaf first, checked to be for the CSR's key; TrustBundle the CA
	// certificates DPS says to trust.
	IssuedChain []*x509.Certificate
	TrustBundle []*x509.Certificate
}

// client is the state of one Register call.
type client struct {
	cfg   Config
	base  string // scheme://host[/prefix], no trailing slash
	host  string // for messages
	hc    *http.Client
	polls int
	// sigs are the signatures of the SAS tokens sent, as sent and in
	// base64: never in an error, whatever the server quotes back.
	sigs []string
}

// Register registers cfg.RegistrationID with DPS and waits for the outcome.
func Register(ctx context.Context, cfg Config) (*Result, error) {
	c, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	defer c.hc.CloseIdleConnections()

	reg := struct {
		RegistrationID string          `json:"registrationId"`
		TPM            *tpmAttestation `json:"tpm,omitempty"`
		Payload        json.RawMessage `json:"payload,omitempty"`
		CSR            string          `json:"csr,omitempty"`
	}{RegistrationID: c.cfg.RegistrationID, Payload: c.cfg.Payload}
	if len(c.cfg.CSR) > 0 {
		reg.CSR = base64.StdEncoding.EncodeToString(c.cfg.CSR)
	}
	if t := c.cfg.TPM; t != nil {
		reg.TPM = &tpmAttestation{EndorsementKey: base64.StdEncoding.EncodeToString(t.EndorsementKey), StorageRootKey: base64.StdEncoding.EncodeToString(t.StorageRootKey)}
	}
	body, err := json.Marshal(reg)
	if err != nil {
		return nil, fault.Wrap(fault.InvalidArgs, err, "DPS registration payload cannot be encoded: %v", err)
	}
	path := "/" + sas.Escape(c.cfg.IDScope) + "/registrations/" + sas.Escape(c.cfg.RegistrationID)
	if c.cfg.TPM != nil {
		if err := c.tpmChallenge(ctx, path+"/register", body); err != nil {
			return nil, err
		}
	}
	op, retry, err := c.call(ctx, "register", http.MethodPut, path+"/register", body)
	if err != nil {
		return nil, err
	}
	for {
		switch op.Status {
		case StatusAssigned:
			if err := c.reimport(ctx, op); err != nil {
				return nil, err
			}
			r := c.result(op)
			if len(c.cfg.CSR) > 0 {
				if err := c.issued(op, r); err != nil {
					return nil, err
				}
			}
			return r, nil
		case StatusFailed:
			return nil, c.failed(op)
		case StatusDisabled:
			return nil, fault.New(fault.NotAuthorized, "DPS %s: the enrollment for registration ID %q is disabled", c.host, c.cfg.RegistrationID)
		}
		// unassigned or assigning: wait, then ask for the operation's status.
		if err := c.wait(ctx, retry, "registration is still "+op.Status); err != nil {
			return nil, err
		}
		op, retry, err = c.call(ctx, "operation status", http.MethodGet, path+"/operations/"+sas.Escape(op.OperationID), nil)
		if err != nil {
			return nil, err
		}
	}
}

func newClient(cfg Config) (*client, error) {
	if cfg.Endpoint == "" {
		cfg.Endpoint = DefaultEndpoint
	}
	u, err := url.Parse(cfg.Endpoint)
	switch {
	case err != nil:
		return nil, fault.New(fault.InvalidArgs, "DPS endpoint %q is not a valid URL", cfg.Endpoint)
	case u.Scheme != "https":
		return nil, fault.New(fault.InvalidArgs, "DPS endpoint %q must start with https://", cfg.Endpoint)
	case u.User != nil:
		return nil, fault.New(fault.InvalidArgs, "DPS endpoint for host %q embeds credentials", u.Host)
	case u.Hostname() == "":
		return nil, fault.New(fault.InvalidArgs, "DPS endpoint %q has no host", cfg.Endpoint)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, fault.New(fault.InvalidArgs, "DPS endpoint %q must not have a query or fragment", cfg.Endpoint)
	}
	if err := checkScope(cfg.IDScope); err != nil {
		return nil, err
	}
	if err := checkRegistrationID(cfg.RegistrationID); err != nil {
		return nil, err
	}
	if cfg.APIVersion == "" {
		cfg.APIVersion = DefaultAPIVersion
		if len(cfg.CSR) > 0 {
			cfg.APIVersion = APIVersionCSR
		}
	}
	if err := cloudhttp.CheckAPIVersion("DPS", cfg.APIVersion); err != nil {
		return nil, err
	}
	if err := cloudhttp.CheckCredentials("DPS", fmt.Sprintf("DPS registration %q", cfg.RegistrationID), "attestation", cfg.SAS != nil, cfg.ClientCert); err != nil {
		return nil, err
	}
	if cfg.TPM != nil && (cfg.SAS == nil || cfg.TPM.Import == nil || len(cfg.TPM.EndorsementKey) == 0 || len(cfg.TPM.StorageRootKey) == 0) {
		return nil, fault.New(fault.InvalidArgs, "DPS TPM registration %q needs the EK and SRK, an Import function and a SAS signer in the TPM", cfg.RegistrationID)
	}
	if len(cfg.Payload) > 0 && !json.Valid(cfg.Payload) {
		return nil, fault.New(fault.InvalidArgs, "DPS registration payload is not valid JSON")
	}
	if err := cmp.Or(
		cloudhttp.Default("DPS", "timeout", &cfg.Timeout, DefaultTimeout),
		cloudhttp.Default("DPS", "MaxPolls", &cfg.MaxPolls, DefaultMaxPolls),
		cloudhttp.Default("DPS", "TokenTTL", &cfg.TokenTTL, DefaultTokenTTL),
	); err != nil {
		return nil, err
	}
	if cfg.Sleep == nil {
		cfg.Sleep = cloudhttp.Sleep
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &client{
		cfg:  cfg,
		base: "https://" + u.Host + strings.TrimRight(u.EscapedPath(), "/"),
		host: u.Host,
	}
	c.hc = cloudhttp.NewClient(cloudhttp.Options{
		Anchors: cfg.TrustAnchors, Cert: cfg.ClientCert, Timeout: cfg.Timeout,
		MaxIdleConnsPerHost: 1, HTTP2: true, // DPS does not redirect; a 3xx is reported.
	})
	return c, nil
}

// checkScope accepts DPS ID scopes ("0ne00000001"): alphanumeric.
func checkScope(s string) error {
	if s == "" {
		return fault.New(fault.InvalidArgs, "DPS ID scope is empty")
	}
	if len(s) > 64 {
		return fault.New(fault.InvalidArgs, "DPS ID scope is longer than 64 characters")
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return fault.New(fault.InvalidArgs, "DPS ID scope %q may hold only letters and digits", s)
		}
	}
	return nil
}

// checkRegistrationID applies DPS's rule: up to 128 characters, letters,
// digits and ": . _ -", no special character first or last.
func checkRegistrationID(s string) error {
	if s == "" {
		return fault.New(fault.InvalidArgs, "DPS registration ID is empty")
	}
	if len(s) > 128 {
		return fault.New(fault.InvalidArgs, "DPS registration ID is longer than 128 characters")
	}
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }
	for i := 0; i < len(s); i++ {
		if c := s[i]; !alnum(c) && c != ':' && c != '.' && c != '_' && c != '-' {
			return fault.New(fault.InvalidArgs, "DPS registration ID %q may hold only letters, digits and \":._-\"", printable(s))
		}
	}
	if !alnum(s[0]) || !alnum(s[len(s)-1]) {
		return fault.New(fault.InvalidArgs, "DPS registration ID %q must start and end with a letter or digit", s)
	}
	return nil
}

func (c *client) result(op *Operation) *Result {
	st := op.RegistrationState
	r := &Result{
		AssignedHub:    st.AssignedHub,
		DeviceID:       st.DeviceID,
		Substatus:      st.Substatus,
		ETag:           st.ETag,
		RegistrationID: st.RegistrationID,
		CreatedAt:      parseTime(st.CreatedDateTimeUTC),
		UpdatedAt:      parseTime(st.LastUpdatedDateTimeUTC),
	}
	if r.RegistrationID == "" {
		r.RegistrationID = c.cfg.RegistrationID
	}
	if len(st.Payload) > 0 {
		r.Payload = append(json.RawMessage(nil), st.Payload...)
	}
	return r
}

// reimport imports registrationState.tpm.authenticationKey, the key the
// hub knows the device by, when DPS sent one with the assignment.
func (c *client) reimport(ctx context.Context, op *Operation) error {
	st := op.RegistrationState
	if c.cfg.TPM == nil || st.TPM == nil {
		return nil
	}
	blob, err := decodeAuthKey(st.TPM.AuthenticationKey)
	if err != nil {
		return fault.Wrap(fault.Failed, err, "DPS %s sent an unusable registrationState.tpm: %s", c.host, fault.Message(err))
	}
	return c.cfg.TPM.Import(ctx, blob)
}

// failed turns a "failed" operation into an error carrying DPS's errorCode
// and message. DPS codes are the HTTP status times 1000 plus a detail
// (401002, 404201, ...), so the first three digits choose the kind.
func (c *client) failed(op *Operation) error {
	code, msg := "", ""
	if st := op.RegistrationState; st != nil {
		code, msg = st.ErrorCode.String(), st.ErrorMessage
	}
	kind := kindOfCode(code)
	detail := ""
	if code != "" {
		detail = " " + sanitize([]byte(code), 20)
	}
	if msg != "" {
		detail += c.quoteReason(msg)
	}
	if detail == "" {
		detail = " (no reason given)"
	}
	return fault.New(kind, "DPS %s: registration of %q failed: error%s", c.host, c.cfg.RegistrationID, detail)
}

// quoteReason renders a server message as ": \"...\"", scrubbed of the
// tokens sent, and short.
func (c *client) quoteReason(s string) string {
	return ": " + cloudhttp.Quote([]byte(s), c.sigs...)
}

func kindOfCode(code string) fault.Kind {
	if len(code) != 6 {
		return fault.Failed
	}
	switch code[:3] {
	case "400":
		return fault.InvalidArgs
	case "401", "403":
		return fault.NotAuthorized
	case "404":
		return fault.NotFound
	case "409", "412":
		return fault.AlreadyExists
	case "429", "500", "503":
		return fault.Unavailable
	}
	return fault.Failed
}

// wait sleeps before the next request: retryAfter, the server's word, on
// the poll schedule (pollWait), counting it against MaxPolls.
func (c *client) wait(ctx context.Context, retryAfter time.Duration, why string) error {
	d := pollWait(c.polls, retryAfter)
	c.polls++
	if c.polls > c.cfg.MaxPolls {
		return fault.New(fault.Unavailable, "DPS %s: %s after %d polls; giving up", c.host, why, c.cfg.MaxPolls)
	}
	if err := c.cfg.Sleep(ctx, d); err != nil {
		return fault.Wrap(fault.Unavailable, err, "DPS %s: stopped waiting %v (%s): %v", c.host, d, why, err)
	}
	return nil
}
