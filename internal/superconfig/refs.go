package superconfig

import (
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net/url"
	"strings"

	"github.com/edgev2/edgev2/internal/credential"
	"github.com/edgev2/edgev2/internal/label"
	keysconfig "github.com/edgev2/edgev2/keys/config"
	"github.com/edgev2/edgev2/keys/pkcs11uri"
)

// The ids the compiler gives keys and certificates it adds to the Keys and
// Certificates services from file:// or pkcs11: URIs and inline values.
const (
	idDevice       = "device-id"
	idGroupKey     = "dps-group-key"
	idLocalCA      = "local-ca"
	idEdgeCA       = "edge-ca"
	idESTIdentity  = "est-id"
	idESTBootstrap = "est-bootstrap"
	// idQuickstartEdgeCA is the certificate and key id of the edge CA
	// modrtd makes when [edge_ca] is not set (cmd/edgev2-modrtd quickstartCAID).
	idQuickstartEdgeCA = "edgev2-edge-ca"
)

// ids collects the keys and certificates the compiled configs preload, and
// which super-config key added each, so two settings cannot claim one id
// for different things.
type ids struct {
	keys, certs         map[string]string // id -> URI
	keyFrom, certFrom   map[string]string // id -> super-config key
	issued              map[string]string // certificate id -> its key id (cert_issuance.certs, edge_ca)
	secretFiles         map[string][]byte // key id -> raw key bytes (inline values)
	secretFrom          map[string]string
	preloadedKeyDefined map[string]bool
}

func newIDs() *ids {
	return &ids{keys: map[string]string{}, certs: map[string]string{}, keyFrom: map[string]string{},
		certFrom: map[string]string{}, issued: map[string]string{}, secretFiles: map[string][]byte{},
		secretFrom: map[string]string{}, preloadedKeyDefined: map[string]bool{}}
}

func isFileURI(s string) bool   { return strings.HasPrefix(s, "file://") }
func isPKCS11URI(s string) bool { return len(s) >= 7 && strings.EqualFold(s[:7], "pkcs11:") }

// secretKeyPath is where an inline key value was written for keyd to
// preload before apply sealed them as credentials: removed when found.
func secretKeyPath(id string) string { return "/etc/edgev2/keyd." + id + ".key" }

// checkFileURI says what is wrong with a file:// URI, or "".
func checkFileURI(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "file" || !strings.HasPrefix(u.Path, "/") || (u.Host != "" && u.Host != "localhost") {
		return fmt.Sprintf("%q is not a file:// URI with an absolute path", raw)
	}
	return ""
}

// checkPKCS11URI says what is wrong with a pkcs11: URI, without echoing a
// pin-value.
func (c *Config) checkPKCS11URI(raw string) string {
	if c.Keys.PKCS11LibPath == "" {
		return "a pkcs11: URI needs [keys] pkcs11_lib_path"
	}
	if _, err := pkcs11uri.Parse(raw); err != nil {
		if strings.Contains(strings.ToLower(raw), "pin-value") {
			return "not a valid RFC 7512 PKCS#11 URI"
		}
		return err.Error()
	}
	return ""
}

// keyRef resolves a key setting (file:// URI, pkcs11: URI or key id) to
// the Keys id the services use; URIs are preloaded as id.
func (c *Config) keyRef(r *ids, key, value, id string) (string, error) {
	switch {
	case value == "":
		return "", c.bad(key, "not set", "set a file:// or pkcs11: URI, or a key id")
	case isFileURI(value):
		if msg := checkFileURI(value); msg != "" {
			return "", c.bad(key, msg, `use "file:///etc/edgev2/device-id.key.pem"`)
		}
	case isPKCS11URI(value):
		if msg := c.checkPKCS11URI(value); msg != "" {
			return "", c.bad(key, msg, `use "pkcs11:token=edgev2;object=device-id" and set [keys] pkcs11_lib_path`)
		}
	default:
		if err := keysconfig.ValidateID(value); err != nil {
			return "", c.bad(key, err.Error(), "use a file:// or pkcs11: URI, or a key id of printable UTF-8")
		}
		if !r.preloadedKeyDefined[value] && !r.issuedKey(value) {
			return "", c.bad(key, fmt.Sprintf("key id %q is neither in [preloaded_keys] nor the key of a certificate in [cert_issuance.certs]", value),
				"add it to [preloaded_keys], or give a file:// or pkcs11: URI here")
		}
		return value, nil
	}
	return id, r.addKey(c, key, id, value)
}

// certRef resolves a certificate setting (file:// URI or certificate id).
func (c *Config) certRef(r *ids, key, value, id string) (string, error) {
	switch {
	case value == "":
		return "", c.bad(key, "not set", "set a file:// URI or a certificate id")
	case isFileURI(value):
		if msg := checkFileURI(value); msg != "" {
			return "", c.bad(key, msg, `use "file:///etc/edgev2/device-id.pem"`)
		}
		return id, r.addCert(c, key, id, value)
	default:
		if msg := label.ValidateID("certificate id", value); msg != "" {
			return "", c.bad(key, msg, "use a file:// URI or a certificate id of printable UTF-8")
		}
		if _, ok := r.certs[value]; !ok {
			if _, ok := r.issued[value]; !ok {
				return "", c.bad(key, fmt.Sprintf("certificate id %q is neither in [preloaded_certs] nor in [cert_issuance.certs]", value),
					fmt.Sprintf("add [cert_issuance.certs.%s] or a [preloaded_certs] entry, or give a file:// URI here", value))
			}
		}
		return value, nil
	}
}

// symmetricKey resolves a KeySource: an inline value becomes a key file
// keyd preloads: raw bytes for a sign key, keyd's PEM form with its usage
// header for a derive (group enrollment) key.
func (c *Config) symmetricKey(r *ids, key string, ks *KeySource, id string, derive bool) (string, error) {
	n := 0
	for _, s := range []string{ks.Value, ks.URI, ks.ID} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return "", c.bad(key, "set exactly one of value, uri and id", `use { value = "<base64>" }, { uri = "file:///..." } or { id = "<key id>" }`)
	}
	switch {
	case ks.Value != "":
		raw, err := base64.StdEncoding.DecodeString(ks.Value)
		if err != nil || len(raw) == 0 {
			// Never echo the value: it is a secret.
			return "", c.bad(key+".value", "not valid base64", "paste the key exactly as the portal shows it (standard base64)")
		}
		if from, ok := r.secretFrom[id]; ok {
			return "", c.bad(key, fmt.Sprintf("key id %q is already set by %s", id, from), "keep one")
		}
		if from, ok := r.keyFrom[id]; ok {
			return "", c.bad(key, fmt.Sprintf("key id %q is already set by %s", id, from), "keep one")
		}
		if derive {
			raw = pem.EncodeToMemory(&pem.Block{Type: "EDGEV2 SYMMETRIC KEY", Headers: map[string]string{"Edgev2-Usage": "derive"}, Bytes: raw})
		}
		r.secretFiles[id], r.secretFrom[id] = raw, key
		return id, r.addKey(c, key, id, credential.Scheme+credentialName("keyd", id))
	case ks.URI != "":
		if !isFileURI(ks.URI) && !isPKCS11URI(ks.URI) {
			return "", c.bad(key+".uri", "unsupported URI scheme", `use "file:///..." or "pkcs11:..."`)
		}
		return c.keyRef(r, key+".uri", ks.URI, id)
	default:
		if err := keysconfig.ValidateID(ks.ID); err != nil {
			return "", c.bad(key+".id", err.Error(), "use a key id of printable UTF-8")
		}
		return ks.ID, nil
	}
}

func (r *ids) issuedKey(id string) bool {
	for _, k := range r.issued {
		if k == id {
			return true
		}
	}
	return false
}

func (r *ids) addKey(c *Config, key, id, uri string) error {
	if old, ok := r.keys[id]; ok && old != uri {
		return c.bad(key, fmt.Sprintf("it needs key id %q, which %s already uses for another key", id, r.keyFrom[id]), "remove one of the two, or rename the [preloaded_keys] entry")
	}
	r.keys[id], r.keyFrom[id] = uri, key
	return nil
}

func (r *ids) addCert(c *Config, key, id, uri string) error {
	if old, ok := r.certs[id]; ok && old != uri {
		return c.bad(key, fmt.Sprintf("it needs certificate id %q, which %s already uses for another certificate", id, r.certFrom[id]), "remove one of the two, or rename the [preloaded_certs] entry")
	}
	if _, ok := r.issued[id]; ok {
		return c.bad(key, fmt.Sprintf("it needs certificate id %q, which [cert_issuance.certs] issues", id), "remove one of the two")
	}
	r.certs[id], r.certFrom[id] = uri, key
	return nil
}
