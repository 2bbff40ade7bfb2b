package est

import (
	"encoding/asn1"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/edgev2/edgev2/internal/labcloud/labconfig"
)

// Config is the [est] table of edgev2-labcloud's configuration file.
// The zero value is usable: a CA named "edgev2-labcloud EST CA" valid ten
// years, certificates valid 30 days, no users, no bootstrap CAs.
type Config struct {
	// CA describes the local CA made on first start; later starts reuse the
	// CA in the state directory and ignore these settings.
	CA CAConfig `toml:"ca"`
	// Intermediate: a first start makes a root CA and an issuing CA under
	// it (the common deployment). /cacerts returns both; enrollment answers
	// carry only the issued certificate (RFC 7030 4.2.3), and TLS clients
	// are verified against the root alone, so they must present the chain.
	Intermediate bool `toml:"intermediate"`
	// Validity of issued certificates, a Go duration ("720h", "90s");
	// clipped to the CA's own notAfter. Default 720h.
	Validity Duration `toml:"validity"`
	// CSRAttrs are advertised by /csrattrs: dotted OIDs or the names in
	// csrAttrNames, or "OID=OID,OID" for an attribute with OID values
	// (RFC 7030 4.5.2, e.g. "1.2.840.10045.2.1=1.3.132.0.34" asks for P-384).
	// Empty: /csrattrs answers 204.
	CSRAttrs []string `toml:"csrattrs"`
	// Users may authenticate with HTTP Basic. Passwords are kept in plain
	// text: this is a lab CA, not a production one.
	Users []User `toml:"users"`
	// BootstrapCAFiles are PEM files of CA certificates whose client
	// certificates (bootstrap identities, IDevIDs) may call simpleenroll only.
	BootstrapCAFiles []string `toml:"bootstrap_ca_files"`
	// DeferFirst: the first N enroll requests of each client get
	// 202 Accepted with Retry-After: RetryAfter seconds (default 1).
	DeferFirst int `toml:"defer_first"`
	RetryAfter int `toml:"retry_after"`
	// RejectSubjects are path.Match patterns on the CSR's common name;
	// a match is refused with 403.
	RejectSubjects []string `toml:"reject_subjects"`
	// Labels allowed in /.well-known/est/<label>/...; empty accepts any
	// label, and none.
	Labels []string `toml:"labels"`
	// ChallengePasswords, when set, make simpleenroll by a caller not yet
	// enrolled here (HTTP Basic or a bootstrap certificate) carry one of
	// them in the CSR's challengePassword attribute; /csrattrs then asks
	// for it. Enrolled identities re-enroll without one.
	ChallengePasswords []ChallengePassword `toml:"challenge_passwords"`
	// BaseURL, like "https://lab.example", puts a CRL distribution point
	// (BaseURL + "/crl") in issued certificates. Empty: none.
	BaseURL string `toml:"base_url"`
}

// CAConfig is the subject and lifetime of the CA made on first start.
type CAConfig struct {
	CommonName   string   `toml:"common_name"`  // default "edgev2-labcloud EST CA"
	Organization string   `toml:"organization"` // default "edgev2 lab"
	Validity     Duration `toml:"validity"`     // default 87600h (10 years)
}

// User is an HTTP Basic identity.
type User struct {
	Name     string `toml:"name"`
	Password string `toml:"password"`
}

// Duration is a time.Duration written as a Go duration string in TOML.
type Duration time.Duration

// UnmarshalText parses a Go duration string such as "720h" or "90s".
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// ConfigError is a configuration mistake in the [est] table.
type ConfigError = labconfig.Error

const (
	defaultCAName       = "edgev2-labcloud EST CA"
	defaultOrganization = "edgev2 lab"
	defaultCAValidity   = 10 * 365 * 24 * time.Hour
	defaultValidity     = 30 * 24 * time.Hour
)

// withDefaults returns c with unset settings filled in.
func (c Config) withDefaults() Config {
	if c.CA.CommonName == "" {
		c.CA.CommonName = defaultCAName
	}
	if c.CA.Organization == "" {
		c.CA.Organization = defaultOrganization
	}
	if c.CA.Validity == 0 {
		c.CA.Validity = Duration(defaultCAValidity)
	}
	if c.Validity == 0 {
		c.Validity = Duration(defaultValidity)
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = 1
	}
	return c
}

// Validate reports the first mistake in c.
func (c Config) Validate() error {
	if c.CA.Validity < 0 {
		return &ConfigError{Table: "est", Key: "ca.validity", Problem: "negative", Fix: `use a duration like "87600h"`}
	}
	if c.Validity < 0 {
		return &ConfigError{Table: "est", Key: "validity", Problem: "negative", Fix: `use a duration like "720h" or "90s"`}
	}
	if _, err := encodeCSRAttrs(c.CSRAttrs); err != nil {
		return &ConfigError{Table: "est", Key: "csrattrs", Problem: err.Error(), Fix: `use dotted OIDs ("1.2.840.10045.4.3.2"), known names (` + strings.Join(csrAttrNameList(), ", ") + `) or "OID=OID,OID"`}
	}
	seen := map[string]bool{}
	for i, u := range c.Users {
		key := fmt.Sprintf("users[%d]", i)
		if u.Name == "" || strings.Contains(u.Name, ":") {
			return &ConfigError{Table: "est", Key: key + ".name", Problem: "empty or contains ':'", Fix: "use a user name without ':'"}
		}
		if u.Password == "" {
			return &ConfigError{Table: "est", Key: key + ".password", Problem: "empty", Fix: "set a password"}
		}
		if seen[u.Name] {
			return &ConfigError{Table: "est", Key: key + ".name", Problem: fmt.Sprintf("user %q is listed twice", u.Name), Fix: "keep one entry per user"}
		}
		seen[u.Name] = true
	}
	if c.DeferFirst < 0 {
		return &ConfigError{Table: "est", Key: "defer_first", Problem: "negative", Fix: "use 0 (never defer) or more"}
	}
	if c.RetryAfter < 0 {
		return &ConfigError{Table: "est", Key: "retry_after", Problem: "negative", Fix: "use seconds, 1 or more"}
	}
	for i, p := range c.RejectSubjects {
		if _, err := path.Match(p, ""); err != nil {
			return &ConfigError{Table: "est", Key: fmt.Sprintf("reject_subjects[%d]", i), Problem: fmt.Sprintf("%q: %v", p, err), Fix: `use a glob like "evil-*"`}
		}
	}
	for i, l := range c.Labels {
		if !validLabel(l) {
			return &ConfigError{Table: "est", Key: fmt.Sprintf("labels[%d]", i), Problem: fmt.Sprintf("%q is not a path segment", l), Fix: "use letters, digits, '-', '_', '.'"}
		}
	}
	for i, cp := range c.ChallengePasswords {
		if cp.Password == "" || len(cp.Password) > 255 {
			return &ConfigError{Table: "est", Key: fmt.Sprintf("challenge_passwords[%d].password", i), Problem: "empty or longer than 255 bytes", Fix: "set a password of 1 to 255 bytes"}
		}
	}
	if c.BaseURL != "" && !strings.HasPrefix(c.BaseURL, "https://") && !strings.HasPrefix(c.BaseURL, "http://") {
		return &ConfigError{Table: "est", Key: "base_url", Problem: fmt.Sprintf("%q is not an http(s) URL", c.BaseURL), Fix: `use "https://NAME" (a lab cloud serves on 443)`}
	}
	return nil
}

func validLabel(l string) bool {
	if l == "" || l == "." || l == ".." {
		return false
	}
	for _, r := range l {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// csrAttrNames are the names accepted in csrattrs besides dotted OIDs.
var csrAttrNames = map[string]asn1.ObjectIdentifier{
	"challengePassword":  {1, 2, 840, 113549, 1, 9, 7},
	"extensionRequest":   {1, 2, 840, 113549, 1, 9, 14},
	"ecPublicKey":        {1, 2, 840, 10045, 2, 1},
	"rsaEncryption":      {1, 2, 840, 113549, 1, 1, 1},
	"ecdsa-with-SHA256":  {1, 2, 840, 10045, 4, 3, 2},
	"ecdsa-with-SHA384":  {1, 2, 840, 10045, 4, 3, 3},
	"sha256WithRSA":      {1, 2, 840, 113549, 1, 1, 11},
	"secp256r1":          {1, 2, 840, 10045, 3, 1, 7},
	"secp384r1":          {1, 3, 132, 0, 34},
	"serialNumber":       {2, 5, 4, 5},
	"macAddress":         {1, 3, 6, 1, 1, 1, 1, 22},
	"subjectAltName":     {2, 5, 29, 17},
	"extKeyUsage":        {2, 5, 29, 37},
	"id-kp-clientAuth":   {1, 3, 6, 1, 5, 5, 7, 3, 2},
	"id-kp-serverAuth":   {1, 3, 6, 1, 5, 5, 7, 3, 1},
	"ed25519":            {1, 3, 101, 112},
	"sha256":             {2, 16, 840, 1, 101, 3, 4, 2, 1},
	"sha384":             {2, 16, 840, 1, 101, 3, 4, 2, 2},
	"pkcs9-emailAddress": {1, 2, 840, 113549, 1, 9, 1},
}

func csrAttrNameList() []string {
	return []string{"challengePassword", "extensionRequest", "ecPublicKey", "rsaEncryption", "ecdsa-with-SHA256", "secp256r1", "secp384r1", "..."}
}

func parseOID(s string) (asn1.ObjectIdentifier, error) {
	s = strings.TrimSpace(s)
	if oid, ok := csrAttrNames[s]; ok {
		return oid, nil
	}
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return nil, fmt.Errorf("%q is neither a dotted OID nor a known name", s)
	}
	oid := make(asn1.ObjectIdentifier, len(parts))
	for i, p := range parts {
		var n int
		if p == "" || len(p) > 9 {
			return nil, fmt.Errorf("%q is not a dotted OID", s)
		}
		for _, r := range p {
			if r < '0' || r > '9' {
				return nil, fmt.Errorf("%q is not a dotted OID", s)
			}
			n = n*10 + int(r-'0')
		}
		oid[i] = n
	}
	if oid[0] > 2 || (oid[0] < 2 && oid[1] > 39) {
		return nil, fmt.Errorf("%q is not a valid OID", s)
	}
	return oid, nil
}
