package hub

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/cloudhttp"
)

// Authentication types of IoT Hub's AuthenticationMechanism.
const (
	AuthSAS                  = "sas"
	AuthSelfSigned           = "selfSigned"
	AuthCertificateAuthority = "certificateAuthority"
	AuthNone                 = "none"
)

// Module is a module identity in IoT Hub's registry.
type Module struct {
	ModuleID       string
	DeviceID       string
	GenerationID   string
	ETag           string // as in the body, unquoted; If-Match quotes it
	ManagedBy      string
	Authentication Authentication
}

// Authentication is how a module authenticates to IoT Hub.
type Authentication struct {
	Type                string // AuthSAS, AuthSelfSigned, AuthCertificateAuthority or AuthNone
	PrimaryKey          []byte // raw bytes; base64 on the wire
	SecondaryKey        []byte
	PrimaryThumbprint   string
	SecondaryThumbprint string
}

// String never prints the keys.
func (a Authentication) String() string { return "Authentication{Type:" + a.Type + "}" }

// GoString keeps %#v from printing the keys.
func (a Authentication) GoString() string { return a.String() }

// wireModule is the Module JSON of the IoT Hub service REST API. Read-only
// fields the hub adds (connectionState, lastActivityTime, ...) are ignored.
type wireModule struct {
	ModuleID       string    `json:"moduleId"`
	DeviceID       string    `json:"deviceId"`
	GenerationID   string    `json:"generationId,omitempty"`
	ETag           string    `json:"etag,omitempty"`
	ManagedBy      string    `json:"managedBy,omitempty"`
	Authentication *wireAuth `json:"authentication,omitempty"`
}

type wireAuth struct {
	SymmetricKey   *wireSymmetricKey `json:"symmetricKey,omitempty"`
	X509Thumbprint *wireThumbprint   `json:"x509Thumbprint,omitempty"`
	Type           string            `json:"type"`
}

type wireSymmetricKey struct {
	PrimaryKey   string `json:"primaryKey,omitempty"`
	SecondaryKey string `json:"secondaryKey,omitempty"`
}

type wireThumbprint struct {
	PrimaryThumbprint   string `json:"primaryThumbprint,omitempty"`
	SecondaryThumbprint string `json:"secondaryThumbprint,omitempty"`
}

// maxIDLen bounds identifiers in responses; IoT Hub's own limit is 128.
const maxIDLen = 256

// ParseModule parses and checks one Module JSON object.
func ParseModule(body []byte) (*Module, error) {
	var w wireModule
	if err := decodeJSON(body, '{', &w); err != nil {
		return nil, err
	}
	return fromWire(&w)
}

// parseModules parses a JSON array of modules (List Modules on Device).
func parseModules(body []byte) ([]*Module, error) {
	var ws []*wireModule
	if err := decodeJSON(body, '[', &ws); err != nil {
		return nil, err
	}
	out := make([]*Module, 0, len(ws))
	for i, w := range ws {
		if w == nil {
			return nil, fault.New(fault.InvalidArgs, "module %d of the list is null", i)
		}
		m, err := fromWire(w)
		if err != nil {
			return nil, fault.Wrap(fault.InvalidArgs, err, "module %d of the list: %s", i, fault.Message(err))
		}
		out = append(out, m)
	}
	return out, nil
}

// decodeJSON decodes exactly one JSON value that starts with open.
func decodeJSON(body []byte, open byte, v any) error {
	if len(body) > MaxResponseSize {
		return fault.New(fault.InvalidArgs, "body is larger than %d bytes", MaxResponseSize)
	}
	b := bytes.TrimSpace(body)
	if len(b) == 0 {
		return fault.New(fault.InvalidArgs, "body is empty")
	}
	if b[0] != open {
		what := "a JSON object"
		if open == '[' {
			what = "a JSON array"
		}
		return fault.New(fault.InvalidArgs, "body is not %s (starts with %q)", what, sanitize(b[:min(len(b), 16)], 16))
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return fault.Wrap(fault.InvalidArgs, err, "body is not valid module JSON: %s", sanitize([]byte(err.Error()), 120))
	}
	if _, err := dec.Token(); err != io.EOF {
		return fault.New(fault.InvalidArgs, "body has data after the JSON value")
	}
	return nil
}

func fromWire(w *wireModule) (*Module, error) {
	if w.ModuleID == "" {
		return nil, fault.New(fault.InvalidArgs, "module has no moduleId")
	}
	for _, f := range []struct{ name, v string }{
		{"moduleId", w.ModuleID}, {"deviceId", w.DeviceID}, {"generationId", w.GenerationID},
		{"etag", w.ETag}, {"managedBy", w.ManagedBy},
	} {
		if err := checkText(f.name, f.v); err != nil {
			return nil, err
		}
	}
	m := &Module{ModuleID: w.ModuleID, DeviceID: w.DeviceID, GenerationID: w.GenerationID, ETag: w.ETag, ManagedBy: w.ManagedBy}
	if a := w.Authentication; a != nil {
		switch a.Type {
		case AuthSAS, AuthSelfSigned, AuthCertificateAuthority, AuthNone:
		default:
			return nil, fault.New(fault.InvalidArgs, "module %q has unknown authentication type %q", w.ModuleID, sanitize([]byte(a.Type), 40))
		}
		m.Authentication.Type = a.Type
		if k := a.SymmetricKey; k != nil {
			var err error
			if m.Authentication.PrimaryKey, err = decodeKey(k.PrimaryKey); err != nil {
				return nil, fault.New(fault.InvalidArgs, "module %q primaryKey is not base64", w.ModuleID)
			}
			if m.Authentication.SecondaryKey, err = decodeKey(k.SecondaryKey); err != nil {
				return nil, fault.New(fault.InvalidArgs, "module %q secondaryKey is not base64", w.ModuleID)
			}
		}
		if t := a.X509Thumbprint; t != nil {
			if err := checkText("primaryThumbprint", t.PrimaryThumbprint); err != nil {
				return nil, err
			}
			if err := checkText("secondaryThumbprint", t.SecondaryThumbprint); err != nil {
				return nil, err
			}
			m.Authentication.PrimaryThumbprint = t.PrimaryThumbprint
			m.Authentication.SecondaryThumbprint = t.SecondaryThumbprint
		}
	}
	return m, nil
}

func decodeKey(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	return base64.StdEncoding.DecodeString(s)
}

// toWire renders a module for a create or update request. The etag goes in
// If-Match, and the generation ID cannot be set, so neither is sent.
func toWire(deviceID, moduleID, managedBy string, a Authentication) *wireModule {
	w := &wireModule{ModuleID: moduleID, DeviceID: deviceID, ManagedBy: managedBy}
	if a.Type == "" && len(a.PrimaryKey) == 0 && len(a.SecondaryKey) == 0 && a.PrimaryThumbprint == "" && a.SecondaryThumbprint == "" {
		return w
	}
	wa := &wireAuth{Type: a.Type}
	if len(a.PrimaryKey) > 0 || len(a.SecondaryKey) > 0 {
		wa.SymmetricKey = &wireSymmetricKey{encodeKey(a.PrimaryKey), encodeKey(a.SecondaryKey)}
	}
	if a.PrimaryThumbprint != "" || a.SecondaryThumbprint != "" {
		wa.X509Thumbprint = &wireThumbprint{a.PrimaryThumbprint, a.SecondaryThumbprint}
	}
	w.Authentication = wa
	return w
}

func encodeKey(k []byte) string {
	if len(k) == 0 {
		return ""
	}
	return base64.StdEncoding.EncodeToString(k)
}

// checkText rejects identifiers that are too long or carry control characters.
func checkText(name, v string) error { return cloudhttp.CheckText(name, v, maxIDLen) }

// CheckManagedBy refuses a managedBy this client would refuse to read back
// from the hub, before it is sent: a module stored with one would make
// the device's whole module list unreadable.
func CheckManagedBy(v string) error { return checkText("managedBy", v) }
