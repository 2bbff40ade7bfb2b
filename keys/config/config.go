// Package config is keyd's configuration file (/etc/edgev2/keyd.toml): its
// type, parser and checks, shared by keyd and the super-config compiler.
package config

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/edgev2/edgev2/fault"
	iconfig "github.com/edgev2/edgev2/internal/config"
	"github.com/edgev2/edgev2/internal/credential"
	"github.com/edgev2/edgev2/internal/label"
	"github.com/edgev2/edgev2/keys/pkcs11uri"
)

// Config is keyd's configuration file (/etc/edgev2/keyd.toml). The
// omitempty tags shape the file `edgectl config apply` writes: only what
// was configured.
type Config struct {
	// Homedir holds the file engine's keys.
	Homedir string `toml:"homedir"`
	// PKCS11LibPath is the PKCS#11 module; with PKCS11BaseSlot set, generated
	// keys go to that token instead of files.
	PKCS11LibPath  string `toml:"pkcs11_lib_path,omitempty"`
	PKCS11BaseSlot string `toml:"pkcs11_base_slot,omitempty"`
	// PKCS11Sessions bounds the token session pool (default 8).
	PKCS11Sessions int `toml:"pkcs11_sessions,omitempty"`
	// PreloadedKeys maps key ids to file:// or pkcs11: URIs, or to
	// "credential:NAME", a systemd credential the unit loads.
	PreloadedKeys map[string]string `toml:"preloaded_keys,omitempty"`
}

// ReadCredentials reads nothing: the systemd credentials keyd's preloaded
// keys name are read when the key is loaded (keys.Open), as files are.
func (c *Config) ReadCredentials() error { return nil }

// Error names the file, key and fix of a configuration mistake.
type Error = iconfig.Error

// Load reads and validates a keyd config file.
func Load(path string) (*Config, error) { return iconfig.Load(path, Parse) }

// Parse parses and validates keyd config text; path names it in errors.
func Parse(path string, data []byte) (*Config, error) {
	return iconfig.Parse(path, data, "docs/keys.md", (*Config).validate)
}

func (c *Config) validate(path string) error {
	if c.Homedir == "" {
		return &Error{File: path, Key: "homedir", Problem: "not set", Fix: `set homedir = "/var/lib/edgev2/keyd"`}
	}
	if !strings.HasPrefix(c.Homedir, "/") {
		return &Error{File: path, Key: "homedir", Problem: fmt.Sprintf("%q is not an absolute path", c.Homedir), Fix: "use an absolute path"}
	}
	if c.PKCS11BaseSlot != "" && c.PKCS11LibPath == "" {
		return &Error{File: path, Key: "pkcs11_lib_path", Problem: "not set, but pkcs11_base_slot is", Fix: "set the PKCS#11 module path, e.g. /usr/lib/softhsm/libsofthsm2.so"}
	}
	if c.PKCS11BaseSlot != "" {
		u, err := pkcs11uri.Parse(c.PKCS11BaseSlot)
		if err != nil {
			return &Error{File: path, Key: "pkcs11_base_slot", Problem: err.Error(), Fix: `use an RFC 7512 URI like "pkcs11:token=edgev2?pin-source=file:///etc/edgev2/pin"`}
		}
		if _, err := u.PINSourcePath(); err != nil {
			return &Error{File: path, Key: "pkcs11_base_slot", Problem: err.Error(), Fix: `give pin-source an absolute path, e.g. "pin-source=file:///etc/edgev2/keyd.pin"`}
		}
	}
	if c.PKCS11Sessions < 0 || c.PKCS11Sessions > 256 {
		return &Error{File: path, Key: "pkcs11_sessions", Problem: fmt.Sprintf("%d is out of range", c.PKCS11Sessions), Fix: "use 1..256, or leave it out for 8"}
	}
	for id, uri := range c.PreloadedKeys {
		key := "preloaded_keys." + id
		if err := ValidateID(id); err != nil {
			return &Error{File: path, Key: key, Problem: err.Error(), Fix: "use a key id of printable UTF-8"}
		}
		switch {
		case strings.HasPrefix(uri, "file://"):
			u, err := url.Parse(uri)
			if err != nil || u.Path == "" || !strings.HasPrefix(u.Path, "/") || (u.Host != "" && u.Host != "localhost") {
				return &Error{File: path, Key: key, Problem: fmt.Sprintf("%q is not a file:// URI with an absolute path", uri), Fix: `use "file:///path/to/key.pem"`}
			}
		case strings.HasPrefix(strings.ToLower(uri), "pkcs11:"):
			if c.PKCS11LibPath == "" {
				return &Error{File: path, Key: key, Problem: "a pkcs11: key needs pkcs11_lib_path", Fix: "set pkcs11_lib_path"}
			}
			u, err := pkcs11uri.Parse(uri)
			if err != nil {
				return &Error{File: path, Key: key, Problem: err.Error(), Fix: `use "pkcs11:token=...;object=<label>"`}
			}
			if _, err := u.PINSourcePath(); err != nil {
				return &Error{File: path, Key: key, Problem: err.Error(), Fix: `give pin-source an absolute path, e.g. "pin-source=file:///etc/edgev2/keyd.pin"`}
			}
		case strings.HasPrefix(uri, credential.Scheme):
			if _, _, err := credential.Ref(uri); err != nil {
				return &Error{File: path, Key: key, Problem: err.Error(), Fix: `use "credential:<name>" with the name of the unit's LoadCredentialEncrypted= (docs/config.md)`}
			}
		default:
			return &Error{File: path, Key: key, Problem: "unsupported URI scheme", Fix: `use "file:///...", "pkcs11:..." or "credential:<name>"`}
		}
	}
	return nil
}

// FilePath returns the path of a file:// preloaded key URI.
func FilePath(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return ""
	}
	return u.Path
}

// ValidateID checks a key id, from a caller or from configuration: 1..255
// bytes of UTF-8 with no control characters. Everything else is escaped
// wherever it is stored.
func ValidateID(id string) error {
	if msg := label.ValidateID("key id", id); msg != "" {
		return fault.New(fault.InvalidArgs, "%s", msg)
	}
	return nil
}
