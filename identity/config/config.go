// Package config is identityd's configuration file
// (/etc/edgev2/identityd.toml): its type, parser and rules, shared by the
// daemon, `edgectl config apply` (which writes it) and `edgectl check`.
package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	baseconfig "github.com/edgev2/edgev2/internal/config"
	"github.com/edgev2/edgev2/internal/credential"

	"github.com/edgev2/edgev2/identity/connstr"
	"github.com/edgev2/edgev2/identity/hubname"
)

// DefaultMasterKey is the Keys id of the module-key master when master_key
// is not set.
const DefaultMasterKey = "identityd-master"

// ConnStringKeyID is the Keys id under which identityd keeps a connection
// string's key. The services' compiled polkit grants name both.
const ConnStringKeyID = "device-id-sas"

// Config is identityd's configuration file (/etc/edgev2/identityd.toml).
// `edgectl config apply` writes it too: omitempty keeps what was not
// configured out of the file, and the field order is the file's.
type Config struct {
	Hostname     string       `toml:"hostname,omitempty"`
	Homedir      string       `toml:"homedir"`
	MasterKey    string       `toml:"master_key,omitempty"` // Keys id of the module-key master (usage derive)
	Provisioning Provisioning `toml:"provisioning"`
	TPM          TPMConfig    `toml:"tpm,omitempty"`
	Cloud        Cloud        `toml:"cloud,omitempty"`
	Principals   []Principal  `toml:"principal,omitempty"`
}

// Provisioning says how the device gets its identity.
type Provisioning struct {
	Source string `toml:"source"` // manual | dps | none

	// manual
	ConnectionString string `toml:"connection_string,omitempty"`
	// ConnectionStringCredential names the systemd credential holding the
	// connection string (what `edgectl config apply` writes); the daemon
	// reads it into ConnectionString at start (ReadCredentials).
	ConnectionStringCredential string          `toml:"connection_string_credential,omitempty"`
	IoTHubHostname             string          `toml:"iothub_hostname,omitempty"`
	DeviceID                   string          `toml:"device_id,omitempty"`
	GatewayHostname            string          `toml:"gateway_hostname,omitempty"`
	Authentication             *Authentication `toml:"authentication,omitempty"`

	// dps
	GlobalEndpoint string       `toml:"global_endpoint,omitempty"`
	IDScope        string       `toml:"id_scope,omitempty"`
	Attestation    *Attestation `toml:"attestation,omitempty"`
	Payload        string       `toml:"payload,omitempty"` // JSON sent to DPS for custom allocation
}

// Authentication is a manually provisioned device's credential.
type Authentication struct {
	Method       string `toml:"method"`                   // sas | x509
	DeviceIDPK   string `toml:"device_id_pk,omitempty"`   // Keys id: SAS key (sas) or private key (x509)
	DeviceIDCert string `toml:"device_id_cert,omitempty"` // Certificates id (x509)
}

// Attestation is how the device proves itself to DPS.
type Attestation struct {
	Method string `toml:"method"` // symmetric_key | x509 | tpm
	// RegistrationID is required except for tpm, where it defaults to
	// the Azure SDKs' derivation from the EK (tpm.RegistrationID).
	RegistrationID string `toml:"registration_id,omitempty"`
	SymmetricKey   string `toml:"symmetric_key,omitempty"` // Keys id of an individual enrollment's key (usage sign)
	GroupKey       string `toml:"group_key,omitempty"`     // Keys id of a group enrollment's key (usage derive)
	IdentityCert   string `toml:"identity_cert,omitempty"` // Certificates id (x509); EnsureCertificate'd, so it may be EST-issued
	IdentityPK     string `toml:"identity_pk,omitempty"`   // Keys id (x509)
	// OperationalCert, when set, has DPS issue the certificate the device
	// authenticates to the hub with (operational.go).
	OperationalCert *OperationalCert `toml:"operational_cert,omitempty"`
}

// OperationalCert is [provisioning.attestation.operational_cert]: DPS
// issues the device's hub certificate at registration, for a key made in
// Keys, and identityd renews it by registering again with a new key.
type OperationalCert struct {
	CertID         string `toml:"cert_id"`                   // Certificates id of the issued chain
	KeyID          string `toml:"key_id,omitempty"`          // Keys id base; the keys are <key_id>-1 and <key_id>-2 in turn
	KeyType        string `toml:"key_type,omitempty"`        // ec-p256 (default) | ec-p384 | rsa-2048 | rsa-3072 | rsa-4096
	RenewThreshold string `toml:"renew_threshold,omitempty"` // "80%" (default): renew when this much of the lifetime has passed
	TrustBundleID  string `toml:"trust_bundle_id,omitempty"` // Certificates id of DPS's trust bundle (default "dps-trust-bundle")
}

// OperationalKeyIDs are the two Keys ids an operational certificate's keys
// take in turn: a new key per certificate, the old one kept until the new
// certificate is stored.
func (o *OperationalCert) OperationalKeyIDs() [2]string {
	return [2]string{o.KeyID + "-1", o.KeyID + "-2"}
}

// Threshold is the fraction of the lifetime after which to renew.
func (o *OperationalCert) Threshold() float64 {
	v, _ := parsePercent(o.RenewThreshold)
	return v
}

func parsePercent(s string) (float64, bool) {
	n, ok := strings.CutSuffix(strings.TrimSpace(s), "%")
	if !ok {
		return 0, false
	}
	var v int
	if _, err := fmt.Sscanf(n, "%d", &v); err != nil || fmt.Sprint(v) != n || v < 1 || v > 99 {
		return 0, false
	}
	return float64(v) / 100, true
}

// CheckOperationalCert applies identityd's rules and defaults to o, as the
// super-config compiler needs them: a *ConfigError names the key
// (provisioning.attestation.operational_cert.*), the problem and the fix.
func CheckOperationalCert(o *OperationalCert) error {
	return o.validate(func(key, problem, fix string) error {
		return &ConfigError{Key: key, Problem: problem, Fix: fix}
	})
}

var operationalKeyTypes = []string{"ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096"}

func (o *OperationalCert) validate(bad func(key, problem, fix string) error) error {
	const k = "provisioning.attestation.operational_cert"
	if o.CertID == "" {
		return bad(k+".cert_id", "missing", `name the Certificates id the issued certificate is stored under, e.g. cert_id = "device-operational"`)
	}
	if o.KeyID == "" {
		o.KeyID = o.CertID + "-key"
	}
	if o.KeyType == "" {
		o.KeyType = "ec-p256"
	}
	if !slices.Contains(operationalKeyTypes, o.KeyType) {
		return bad(k+".key_type", fmt.Sprintf("unknown key type %q", o.KeyType), "use "+strings.Join(operationalKeyTypes, ", "))
	}
	if o.RenewThreshold == "" {
		o.RenewThreshold = "80%"
	}
	if _, ok := parsePercent(o.RenewThreshold); !ok {
		return bad(k+".renew_threshold", fmt.Sprintf("%q is not a percentage from 1%% to 99%%", o.RenewThreshold), `use e.g. "80%"`)
	}
	if o.TrustBundleID == "" {
		o.TrustBundleID = "dps-trust-bundle"
	}
	if o.TrustBundleID == o.CertID {
		return bad(k+".trust_bundle_id", "the same id as cert_id", "use another Certificates id")
	}
	return nil
}

// Cloud tunes how identityd talks to DPS and IoT Hub.
type Cloud struct {
	TimeoutS      int      `toml:"timeout_s,omitempty"`       // per request, default 30
	RetryMaxS     int      `toml:"retry_max_s,omitempty"`     // provisioning back-off cap, default 300
	TrustedCerts  []string `toml:"trusted_certs,omitempty"`   // Certificates ids of extra trust anchors (else system roots)
	TokenTTLS     int      `toml:"token_ttl_s,omitempty"`     // SAS tokens identityd makes for itself, default 3600
	DPSAPIVersion string   `toml:"dps_api_version,omitempty"` // default the client's
}

// Principal maps a local uid to an identity (GetCallerIdentity).
type Principal struct {
	Name   string `toml:"name"`
	UID    uint32 `toml:"uid"`
	IDType string `toml:"id_type"` // device | module | local
}

// ConfigError names the file, key and fix of a configuration mistake.
type ConfigError = baseconfig.Error

// LoadConfig reads and validates an identityd config file.
func LoadConfig(path string) (*Config, error) { return baseconfig.Load(path, ParseConfig) }

// ParseConfig parses and validates identityd config text.
func ParseConfig(path string, data []byte) (*Config, error) {
	return baseconfig.Parse(path, data, "docs/identity.md", (*Config).validate)
}

func (c *Config) validate(path string) error {
	bad := func(key, problem, fix string) error {
		return &ConfigError{File: path, Key: key, Problem: problem, Fix: fix}
	}
	if c.Homedir == "" || !strings.HasPrefix(c.Homedir, "/") {
		return bad("homedir", fmt.Sprintf("%q is not an absolute path", c.Homedir), `set homedir = "/var/lib/edgev2/identityd"`)
	}
	if c.MasterKey == "" {
		c.MasterKey = DefaultMasterKey
	}
	if c.Cloud.TimeoutS == 0 {
		c.Cloud.TimeoutS = 30
	}
	if c.Cloud.RetryMaxS == 0 {
		c.Cloud.RetryMaxS = 300
	}
	if c.Cloud.TokenTTLS == 0 {
		c.Cloud.TokenTTLS = 3600
	}
	if c.Cloud.TimeoutS < 0 || c.Cloud.RetryMaxS < 0 || c.Cloud.TokenTTLS < 0 {
		return bad("cloud", "negative timeout, retry or TTL", "use positive seconds")
	}
	p := &c.Provisioning
	switch p.Source {
	case "none", "":
		p.Source = "none"
	case "manual":
		if p.ConnectionString != "" || p.ConnectionStringCredential != "" {
			if p.IoTHubHostname != "" || p.DeviceID != "" || p.Authentication != nil {
				return bad("provisioning.connection_string", "a connection string carries hub, device and key; the other manual settings conflict with it", "use either connection_string or iothub_hostname + device_id + [provisioning.authentication]")
			}
			if p.ConnectionStringCredential != "" {
				if p.ConnectionString != "" {
					return bad("provisioning.connection_string_credential", "set connection_string or connection_string_credential, not both", "keep connection_string_credential (`edgectl config apply` seals the connection string)")
				}
				if err := credential.ValidName(p.ConnectionStringCredential); err != nil {
					return bad("provisioning.connection_string_credential", err.Error(), `use the name of the unit's LoadCredentialEncrypted= credential, e.g. "edgev2.identityd.connection-string" (docs/config.md)`)
				}
				break // checked when read (ReadCredentials)
			}
			if err := checkConnectionString(p.ConnectionString); err != nil {
				return bad("provisioning.connection_string", err.Error(), `use "HostName=<hub>;DeviceId=<id>;SharedAccessKey=<base64>"`)
			}
			break
		}
		if p.IoTHubHostname == "" || p.DeviceID == "" {
			return bad("provisioning.iothub_hostname", "manual provisioning needs iothub_hostname and device_id (or connection_string)", "set both")
		}
		if err := hubname.Check("iothub_hostname", p.IoTHubHostname); err != nil {
			return bad("provisioning.iothub_hostname", err.Error(), `use the hub's bare name, like "myhub.azure-devices.net"`)
		}
		if p.GatewayHostname != "" {
			if err := hubname.Check("gateway_hostname", p.GatewayHostname); err != nil {
				return bad("provisioning.gateway_hostname", err.Error(), "use the parent device's bare host name (it serves on port 443)")
			}
		}
		a := p.Authentication
		if a == nil {
			return bad("provisioning.authentication", "missing", `add [provisioning.authentication] with method = "sas" or "x509"`)
		}
		switch a.Method {
		case "sas":
			if a.DeviceIDPK == "" {
				return bad("provisioning.authentication.device_id_pk", "method sas needs the Keys id of the device's SAS key", `set device_id_pk = "device-id"`)
			}
		case "x509":
			if a.DeviceIDPK == "" || a.DeviceIDCert == "" {
				return bad("provisioning.authentication.device_id_cert", "method x509 needs device_id_cert and device_id_pk", "name the certificate and key ids")
			}
		default:
			return bad("provisioning.authentication.method", fmt.Sprintf("unknown method %q", a.Method), `use "sas" or "x509"`)
		}
	case "dps":
		if p.GlobalEndpoint == "" {
			p.GlobalEndpoint = "https://global.azure-devices-provisioning.net"
		}
		// Never echo a password: a URL with a user:password@ part is
		// shown redacted, one that does not parse is not shown.
		const fix = "use https://global.azure-devices-provisioning.net"
		if u, err := url.Parse(p.GlobalEndpoint); err != nil {
			return bad("provisioning.global_endpoint", "is not a valid URL (not shown: it may hold a password)", fix)
		} else if u.User != nil {
			return bad("provisioning.global_endpoint", fmt.Sprintf("%q embeds credentials (user:password@); DPS takes none in its URL", u.Redacted()), fix)
		} else if u.Scheme != "https" || u.Host == "" {
			if strings.Contains(p.GlobalEndpoint, "@") { // mistyped credentials, in its path
				return bad("provisioning.global_endpoint", "is not an https URL (not shown: what comes before its '@' may be a password)", fix)
			}
			return bad("provisioning.global_endpoint", fmt.Sprintf("%q is not an https URL", p.GlobalEndpoint), fix)
		}
		if p.IDScope == "" {
			return bad("provisioning.id_scope", "missing", "copy the ID scope from the DPS instance")
		}
		if p.Payload != "" && !json.Valid([]byte(p.Payload)) {
			return bad("provisioning.payload", "not valid JSON", "write a JSON object")
		}
		a := p.Attestation
		if a == nil {
			return bad("provisioning.attestation", "missing", `add [provisioning.attestation] with method = "symmetric_key", "x509" or "tpm"`)
		}
		switch a.Method {
		case "symmetric_key":
			if a.RegistrationID == "" {
				return bad("provisioning.attestation.registration_id", "missing", "set the registration id")
			}
			if (a.SymmetricKey == "") == (a.GroupKey == "") {
				return bad("provisioning.attestation.symmetric_key", "set exactly one of symmetric_key (individual enrollment) and group_key (group enrollment)", "name the Keys id")
			}
		case "x509":
			if a.IdentityCert == "" || a.IdentityPK == "" {
				return bad("provisioning.attestation.identity_cert", "method x509 needs identity_cert and identity_pk", "name the certificate and key ids")
			}
		case "tpm":
			if err := c.TPM.validate(path); err != nil {
				return err
			}
		default:
			return bad("provisioning.attestation.method", fmt.Sprintf("unknown method %q", a.Method), `use "symmetric_key", "x509" or "tpm"`)
		}
		if o := a.OperationalCert; o != nil {
			if err := o.validate(bad); err != nil {
				return err
			}
			ids := o.OperationalKeyIDs()
			if a.Method == "x509" && (o.CertID == a.IdentityCert || slices.Contains(ids[:], a.IdentityPK)) {
				return bad("provisioning.attestation.operational_cert.cert_id", "the operational certificate and key must not be the onboarding identity_cert and identity_pk", "use other ids")
			}
		}
	default:
		return bad("provisioning.source", fmt.Sprintf("unknown source %q", p.Source), `use "manual", "dps" or "none"`)
	}
	for i, pr := range c.Principals {
		switch pr.IDType {
		case "device", "module", "local":
		default:
			return bad(fmt.Sprintf("principal[%d].id_type", i), fmt.Sprintf("unknown id_type %q", pr.IDType), `use "device", "module" or "local"`)
		}
		if pr.Name == "" {
			return bad(fmt.Sprintf("principal[%d].name", i), "missing", "name the principal (for modules: the module id)")
		}
	}
	return nil
}

// Fingerprint identifies the provisioning settings: a cached result made
// under other settings (new id scope, new hub) is not served. Field names
// and order of Provisioning and TPMConfig are part of it.
func (c *Config) Fingerprint() string {
	var tpm *TPMConfig // another TPM is another device (omitted otherwise: old caches stay valid)
	if a := c.Provisioning.Attestation; c.Provisioning.Source == "dps" && a != nil && a.Method == "tpm" {
		t := c.TPM
		t.HierarchyAuthorization = nil // a changed password is the same TPM
		tpm = &t
	}
	b, _ := json.Marshal(struct {
		H string
		M string // module keys derive from it: another master, other keys
		P Provisioning
		T *TPMConfig `json:",omitempty"`
	}{c.Hostname, c.MasterKey, c.Provisioning, tpm})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Timeout bounds one request to DPS or the hub.
func (c *Config) Timeout() time.Duration { return time.Duration(c.Cloud.TimeoutS) * time.Second }

// RetryMax caps the provisioning back-off.
func (c *Config) RetryMax() time.Duration { return time.Duration(c.Cloud.RetryMaxS) * time.Second }

// TokenTTL is the lifetime of the SAS tokens identityd makes for itself.
func (c *Config) TokenTTL() time.Duration { return time.Duration(c.Cloud.TokenTTLS) * time.Second }

// checkConnectionString checks a SAS connection string; its errors never
// echo the key.
func checkConnectionString(s string) error {
	cs, err := connstr.Parse(s)
	if err != nil {
		return err
	}
	if len(cs.SharedAccessKey) == 0 {
		return errors.New("it has no SharedAccessKey (use a SAS connection string, or X.509 with [provisioning.authentication])")
	}
	return nil
}

// ReadCredentials reads the secrets the configuration names as systemd
// credentials ($CREDENTIALS_DIRECTORY) into place; a daemon calls it once
// at start. Errors name the credential and the unit line it needs, never
// a secret.
func (c *Config) ReadCredentials() error {
	if name := c.Provisioning.ConnectionStringCredential; name != "" {
		s, err := credential.ReadString(name)
		if err != nil {
			return fmt.Errorf("[provisioning] connection_string_credential: %w", err)
		}
		if err := checkConnectionString(s); err != nil {
			return fmt.Errorf("[provisioning] connection_string_credential: credential %q: %w", name, err)
		}
		c.Provisioning.ConnectionString = s
	}
	return nil
}
