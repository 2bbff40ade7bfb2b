// Package config is certd's configuration file (/etc/edgev2/certd.toml):
// its type and its parser, shared by certd, edgectl and the super-config.
package config

import (
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	cfgfile "github.com/edgev2/edgev2/internal/config"
	"github.com/edgev2/edgev2/internal/credential"

	"github.com/edgev2/edgev2/internal/label"
)

// Config is certd's configuration file (/etc/edgev2/certd.toml).
type Config struct {
	Homedir        string               `toml:"homedir"`
	PreloadedCerts map[string]string    `toml:"preloaded_certs,omitempty"`
	EST            ESTDefaults          `toml:"est,omitempty"`
	Issuance       map[string]*Issuance `toml:"cert_issuance,omitempty"`
	// LocalCAs binds CA certificate ids to the key that signs for them.
	// Only a CA bound here (or issued here with ca = true, or named by a
	// local_ca issuance with its issuer_key) can issue, and only with that
	// key: a caller never names the key.
	LocalCAs map[string]*LocalCA `toml:"local_ca,omitempty"`

	caKeys map[string]string // CA certificate id -> key id, from all three
}

// LocalCA is one [local_ca.<cert id>] entry.
type LocalCA struct {
	Key string `toml:"key"` // the Keys id of the CA's private key
}

// ESTDefaults are the EST settings every est issuance uses unless it
// overrides them.
type ESTDefaults struct {
	URL          string   `toml:"url,omitempty"`
	Label        string   `toml:"label,omitempty"`
	TrustedCerts []string `toml:"trusted_certs,omitempty"` // certificate ids that anchor the EST server's TLS
	Username     string   `toml:"username,omitempty"`
	Password     string   `toml:"password,omitempty"`
	// PasswordCredential names the systemd credential holding the password
	// (what `edgectl config apply` writes instead of password); the daemon
	// reads it into Password at start (ReadCredentials).
	PasswordCredential string `toml:"password_credential,omitempty"`
	// The EST identity authenticates every request with TLS client auth; if
	// it is missing, the bootstrap identity is used once to enroll it.
	IdentityCert          string `toml:"identity_cert,omitempty"`
	IdentityKey           string `toml:"identity_key,omitempty"`
	BootstrapIdentityCert string `toml:"bootstrap_identity_cert,omitempty"`
	BootstrapIdentityKey  string `toml:"bootstrap_identity_key,omitempty"`
	// ChallengePasswordFile holds the shared secret some EST CAs want in
	// the CSR's challengePassword attribute; it is read at each enrollment
	// and never logged. SendChallengePassword: "when_asked" (the server's
	// /csrattrs names challengePassword; the default) or "always".
	ChallengePasswordFile string `toml:"challenge_password_file,omitempty"`
	// ChallengePasswordCredential: the same secret as a systemd credential.
	ChallengePasswordCredential string `toml:"challenge_password_credential,omitempty"`
	SendChallengePassword       string `toml:"send_challenge_password,omitempty"`
	// CRLCheckInterval is how often the CRL distribution points of
	// EST-issued certificates are checked (default "1h"; "0s" turns the
	// schedule off). A revoked certificate is re-enrolled with a new key.
	CRLCheckInterval string `toml:"crl_check_interval,omitempty"`

	crlInterval time.Duration
}

// Issuance is how one certificate id is issued and renewed.
type Issuance struct {
	Method        string     `toml:"method"`           // est | local_ca | self_signed
	KeyID         string     `toml:"key_id,omitempty"` // default: the certificate id
	KeyAlgorithms string     `toml:"key_algorithms,omitempty"`
	CommonName    string     `toml:"common_name,omitempty"`
	Organization  string     `toml:"organization,omitempty"`
	DNSNames      []string   `toml:"dns_names,omitempty"`
	ExpiryDays    int        `toml:"expiry_days,omitempty"`
	Expiry        string     `toml:"expiry,omitempty"` // a duration ("90s", "12h"), for short-lived certificates
	URL           string     `toml:"url,omitempty"`
	Label         string     `toml:"label,omitempty"`
	IssuerCert    string     `toml:"issuer_cert,omitempty"` // local_ca
	IssuerKey     string     `toml:"issuer_key,omitempty"`
	CA            bool       `toml:"ca,omitempty"` // issue a CA certificate (local_ca, self_signed)
	AutoRenew     *AutoRenew `toml:"auto_renew,omitempty"`

	validity time.Duration
}

// AutoRenew is a renewal policy.
type AutoRenew struct {
	Threshold string `toml:"threshold,omitempty"` // "80%" of the lifetime elapsed, or a time before expiry: "10d", "30min"
	Retry     string `toml:"retry,omitempty"`     // after a failure: "10%" of the lifetime or a duration; doubles per failure
	RotateKey bool   `toml:"rotate_key,omitempty"`
	// MinInterval is the least time between two successful renewals, so a
	// CA that issues shorter lifetimes than asked cannot drive certd into
	// a renewal loop. Default "1min".
	MinInterval string `toml:"min_interval,omitempty"`

	threshold, retry Span
	minInterval      time.Duration
}

// PaceFraction is where in its lifetime a certificate is renewed when the
// CA issued it for no longer than the renewal threshold (EST cannot ask for
// a validity period, and real CAs cap it).
const PaceFraction = 0.5

// DefaultMinInterval is auto_renew.min_interval's default.
const DefaultMinInterval = time.Minute

// Paced reports whether a certificate valid from notBefore to notAfter is
// renewed at PaceFraction of its lifetime because its whole lifetime is at
// or below the configured threshold.
func (ar *AutoRenew) Paced(notBefore, notAfter time.Time) bool {
	return ar.threshold.Fraction == 0 && ar.threshold.D >= notAfter.Sub(notBefore)
}

// MinIntervalDuration is the parsed min_interval.
func (ar *AutoRenew) MinIntervalDuration() time.Duration { return ar.minInterval }

// ThresholdSpan is the parsed threshold.
func (ar *AutoRenew) ThresholdSpan() Span { return ar.threshold }

// RetrySpan is the parsed retry.
func (ar *AutoRenew) RetrySpan() Span { return ar.retry }

// CRLInterval is the parsed crl_check_interval (0: no schedule).
func (e *ESTDefaults) CRLInterval() time.Duration { return e.crlInterval }

// Span is either a fraction of a certificate's lifetime or a duration.
type Span struct {
	Fraction float64       // of the lifetime; 0 when D is set
	D        time.Duration // used when Fraction is 0
}

// Of resolves the span against a lifetime.
func (s Span) Of(lifetime time.Duration) time.Duration {
	if s.Fraction > 0 {
		return time.Duration(float64(lifetime) * s.Fraction)
	}
	return s.D
}

// parseSpan reads "80%", "10d", "30min", "90s", "12h".
func parseSpan(s string) (Span, error) {
	s = strings.TrimSpace(s)
	if p, ok := strings.CutSuffix(s, "%"); ok {
		f, err := strconv.ParseFloat(p, 64)
		if err != nil || f <= 0 || f >= 100 {
			return Span{}, fmt.Errorf("%q is not a percentage between 0 and 100", s)
		}
		return Span{Fraction: f / 100}, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 {
			return Span{}, fmt.Errorf("%q is not a number of days", s)
		}
		return Span{D: time.Duration(n) * 24 * time.Hour}, nil
	}
	if m, ok := strings.CutSuffix(s, "min"); ok {
		s = m + "m"
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return Span{}, fmt.Errorf("%q is neither a percentage (\"80%%\") nor a duration (\"10d\", \"30min\", \"90s\")", s)
	}
	return Span{D: d}, nil
}

// Error names the file, key and fix of a configuration mistake.
type Error = cfgfile.Error

// Load reads and validates a certd config file.
func Load(path string) (*Config, error) { return cfgfile.Load(path, Parse) }

// Parse parses and validates certd config text.
func Parse(path string, data []byte) (*Config, error) {
	return cfgfile.Parse(path, data, "docs/certs.md", (*Config).validate)
}

func (c *Config) validate(path string) error {
	bad := func(key, problem, fix string) error {
		return &Error{File: path, Key: key, Problem: problem, Fix: fix}
	}
	if c.Homedir == "" || !strings.HasPrefix(c.Homedir, "/") {
		return bad("homedir", fmt.Sprintf("%q is not an absolute path", c.Homedir), `set homedir = "/var/lib/edgev2/certd"`)
	}
	for id, uri := range c.PreloadedCerts {
		if msg := label.ValidateID("certificate id", id); msg != "" {
			return bad("preloaded_certs."+id, msg, "use printable UTF-8")
		}
		u, err := url.Parse(uri)
		if err != nil || u.Scheme != "file" || !strings.HasPrefix(u.Path, "/") {
			return bad("preloaded_certs."+id, fmt.Sprintf("%q is not a file:// URI with an absolute path", uri), `use "file:///etc/edgev2/ca.pem"`)
		}
	}
	if c.EST.URL != "" {
		if err := CheckHTTPS(c.EST.URL); err != nil {
			return bad("est.url", err.Error(), "use https://host/.well-known/est")
		}
	}
	if (c.EST.IdentityCert == "") != (c.EST.IdentityKey == "") {
		return bad("est.identity_cert", "identity_cert and identity_key go together", "set both or neither")
	}
	if (c.EST.BootstrapIdentityCert == "") != (c.EST.BootstrapIdentityKey == "") {
		return bad("est.bootstrap_identity_cert", "bootstrap_identity_cert and bootstrap_identity_key go together", "set both or neither")
	}
	switch c.EST.SendChallengePassword {
	case "", "when_asked", "always":
	default:
		return bad("est.send_challenge_password", fmt.Sprintf("unknown value %q", c.EST.SendChallengePassword), `use "when_asked" or "always"`)
	}
	if f := c.EST.ChallengePasswordFile; f != "" && !strings.HasPrefix(f, "/") {
		// Not echoed: a value that is no path may be the password itself.
		return bad("est.challenge_password_file", "is not an absolute path (not shown: it may be the challenge password itself)", `use e.g. "/etc/edgev2/est-challenge-password" (0600, owned by edgecerts)`)
	}
	if c.EST.ChallengePasswordFile != "" && c.EST.ChallengePasswordCredential != "" {
		return bad("est.challenge_password_credential", "set challenge_password_file or challenge_password_credential, not both", "keep one")
	}
	if c.EST.SendChallengePassword == "always" && c.EST.ChallengePasswordFile == "" && c.EST.ChallengePasswordCredential == "" {
		return bad("est.send_challenge_password", `"always" needs the secret`, "set challenge_password_file or challenge_password_credential")
	}
	for key, name := range map[string]string{"est.password_credential": c.EST.PasswordCredential, "est.challenge_password_credential": c.EST.ChallengePasswordCredential} {
		if name == "" {
			continue
		}
		if err := credential.ValidName(name); err != nil {
			return bad(key, err.Error(), `use the name of the unit's LoadCredentialEncrypted= credential, e.g. "edgev2.certd.est-password" (docs/config.md)`)
		}
	}
	if c.EST.Password != "" && c.EST.PasswordCredential != "" {
		return bad("est.password_credential", "set password or password_credential, not both", "keep password_credential (`edgectl config apply` seals the password)")
	}
	if c.EST.PasswordCredential != "" && c.EST.Username == "" {
		return bad("est.password_credential", "a password without a username", "set username")
	}
	c.EST.crlInterval = time.Hour
	if v := c.EST.CRLCheckInterval; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return bad("est.crl_check_interval", fmt.Sprintf("%q is not a duration", v), `use e.g. "1h", or "0s" to turn CRL checks off`)
		}
		c.EST.crlInterval = d
	}
	if c.EST.BootstrapIdentityCert != "" && c.EST.IdentityCert == "" {
		return bad("est.identity_cert", "a bootstrap identity is only used to enroll the EST identity, which is not set", "set identity_cert and identity_key")
	}
	for id, is := range c.Issuance {
		key := "cert_issuance." + id
		if _, ok := c.PreloadedCerts[id]; ok {
			return bad(key, "this id is also in [preloaded_certs]; a preloaded certificate is read-only and cannot be issued", "remove one of the two")
		}
		if msg := label.ValidateID("certificate id", id); msg != "" {
			return bad(key, msg, "use printable UTF-8")
		}
		switch is.Method {
		case "est":
			if is.URL == "" && c.EST.URL == "" {
				return bad(key+".url", "method est needs a URL", "set url here or [est] url")
			}
			if is.URL != "" {
				if err := CheckHTTPS(is.URL); err != nil {
					return bad(key+".url", err.Error(), "use https://host/.well-known/est")
				}
			}
		case "local_ca":
			if is.IssuerCert == "" {
				return bad(key+".issuer_cert", "method local_ca needs issuer_cert", "name the CA certificate id (its key comes from [local_ca.<id>] key, or issuer_key here)")
			}
		case "self_signed":
		default:
			return bad(key+".method", fmt.Sprintf("unknown method %q", is.Method), `use "est", "local_ca" or "self_signed"`)
		}
		if is.KeyID == "" {
			is.KeyID = id
		}
		if is.KeyAlgorithms == "" {
			is.KeyAlgorithms = "ec-p256:*"
		}
		if is.CommonName == "" {
			is.CommonName = id
		}
		switch {
		case is.Expiry != "" && is.ExpiryDays != 0:
			return bad(key+".expiry", "set expiry or expiry_days, not both", "keep one")
		case is.Expiry != "":
			d, err := time.ParseDuration(is.Expiry)
			if err != nil || d <= 0 {
				return bad(key+".expiry", fmt.Sprintf("%q is not a positive duration", is.Expiry), `use e.g. "90s", "12h"`)
			}
			is.validity = d
		case is.ExpiryDays < 0:
			return bad(key+".expiry_days", "negative", "use a positive number of days")
		case is.ExpiryDays > 0:
			is.validity = time.Duration(is.ExpiryDays) * 24 * time.Hour
		default:
			is.validity = 30 * 24 * time.Hour
		}
		if ar := is.AutoRenew; ar != nil {
			if ar.Threshold == "" {
				ar.Threshold = "80%"
			}
			if ar.Retry == "" {
				ar.Retry = "4%"
			}
			var err error
			if ar.threshold, err = parseSpan(ar.Threshold); err != nil {
				return bad(key+".auto_renew.threshold", err.Error(), `use "80%" or a time before expiry like "10d"`)
			}
			if ar.retry, err = parseSpan(ar.Retry); err != nil {
				return bad(key+".auto_renew.retry", err.Error(), `use "4%" or a duration like "1h"`)
			}
			ar.minInterval = DefaultMinInterval
			if ar.MinInterval != "" {
				mi, err := parseSpan(ar.MinInterval)
				if err != nil || mi.Fraction > 0 {
					return bad(key+".auto_renew.min_interval", fmt.Sprintf("%q is not a duration", ar.MinInterval), `use a duration like "1min" or "30s"`)
				}
				ar.minInterval = mi.D
			}
		}
	}
	return c.bindCAs(bad)
}

// bindCAs collects which key signs for each CA: [local_ca.<id>] key, the
// key_id of an issuance with ca = true, and a local_ca issuance's
// issuer_key. They must agree, and every local_ca issuance's CA must be bound.
func (c *Config) bindCAs(bad func(key, problem, fix string) error) error {
	c.caKeys = map[string]string{}
	from := map[string]string{}
	bind := func(setting, certID, keyID string) error {
		if prev, ok := c.caKeys[certID]; ok && prev != keyID {
			return bad(setting, fmt.Sprintf("binds CA %q to key %q, but %s binds it to key %q", certID, keyID, from[certID], prev), "name one key per CA")
		}
		c.caKeys[certID], from[certID] = keyID, setting
		return nil
	}
	for _, id := range SortedIDs(c.LocalCAs) {
		lc, key := c.LocalCAs[id], "local_ca."+id
		if msg := label.ValidateID("certificate id", id); msg != "" {
			return bad(key, msg, "use printable UTF-8")
		}
		if lc == nil || lc.Key == "" {
			return bad(key+".key", "missing", "name the Keys id of the CA's private key")
		}
		if msg := label.ValidateID("key id", lc.Key); msg != "" {
			return bad(key+".key", msg, "use printable UTF-8")
		}
		if err := bind(key+".key", id, lc.Key); err != nil {
			return err
		}
	}
	for _, id := range SortedIDs(c.Issuance) {
		if is := c.Issuance[id]; is.CA {
			if err := bind("cert_issuance."+id+".key_id", id, is.KeyID); err != nil {
				return err
			}
		}
	}
	for _, id := range SortedIDs(c.Issuance) {
		is, key := c.Issuance[id], "cert_issuance."+id
		if is.Method != "local_ca" {
			continue
		}
		if is.IssuerKey != "" {
			if err := bind(key+".issuer_key", is.IssuerCert, is.IssuerKey); err != nil {
				return err
			}
		}
		if _, ok := c.caKeys[is.IssuerCert]; !ok {
			return bad(key+".issuer_cert", fmt.Sprintf("CA %q has no key in the configuration", is.IssuerCert),
				fmt.Sprintf("add [local_ca.%s] key = \"<key id>\"", is.IssuerCert))
		}
	}
	return nil
}

// CAKey is the key the configuration binds to a CA certificate id.
func (c *Config) CAKey(certID string) (string, bool) {
	k, ok := c.caKeys[certID]
	return k, ok
}

// SortedIDs are the keys of an id-keyed table, sorted.
func SortedIDs[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// CheckHTTPS refuses an EST URL that is not https://host/... or that
// carries credentials. The messages never echo a password: a URL with a
// user:password@ part is shown redacted, one that does not parse (the
// password may be what breaks it) is not shown, nor one with an '@' that
// is no user:password@ part ("https//user:password@host": mistyped, the
// password is in its path).
func CheckHTTPS(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return errors.New("is not a valid URL (EST needs https://host/...; it is not shown: it may hold a password)")
	case u.User != nil:
		return fmt.Errorf("%q embeds credentials (user:password@); set the EST username and password settings instead", u.Redacted())
	case (u.Scheme != "https" || u.Host == "") && strings.Contains(raw, "@"):
		return errors.New("is not an https:// URL (EST needs TLS; it is not shown: what comes before its '@' may be a password)")
	case u.Scheme != "https" || u.Host == "":
		return fmt.Errorf("%q is not an https:// URL (EST needs TLS; plain http is never used)", raw)
	}
	return nil
}

// Validity is how long certificates of this issuance live.
func (is *Issuance) Validity() time.Duration { return is.validity }

// FilePath returns the path of a file:// URI.
func FilePath(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return ""
	}
	return u.Path
}

// ReadCredentials reads the secrets the configuration names as systemd
// credentials ($CREDENTIALS_DIRECTORY) into place; a daemon calls it once
// at start. Errors name the credential and the unit line it needs, never
// a secret.
func (c *Config) ReadCredentials() error {
	if name := c.EST.PasswordCredential; name != "" {
		pw, err := credential.ReadString(name)
		if err != nil {
			return fmt.Errorf("[est] password_credential: %w", err)
		}
		c.EST.Password = pw
	}
	if name := c.EST.ChallengePasswordCredential; name != "" {
		// Read at each enrollment, like challenge_password_file: only
		// check now that it is there.
		if _, err := credential.Read(name); err != nil {
			return fmt.Errorf("[est] challenge_password_credential: %w", err)
		}
	}
	return nil
}
