package hub

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/edgev2/edgev2/internal/atomicfile"
)

// registry is the identity registry as persisted in registry.json.
type registry struct {
	Seq     uint64                `json:"seq"` // source of etags and generation ids
	Devices map[string]*deviceRec `json:"devices"`
}

type deviceRec struct {
	Device  Device             `json:"device"`
	Modules map[string]*Module `json:"modules"`
	// ChainToo: the device also authenticates with a certificate chaining
	// to a verified CA whose CN is its id, besides its own mechanism (DPS
	// issued it an operational certificate under a credential policy that
	// keeps the onboarding credential). Not part of IoT Hub's wire shape.
	ChainToo bool `json:"chainToo,omitempty"`
}

const registryFile = "registry.json"

func loadRegistry(dir string) (*registry, error) {
	reg := &registry{Devices: map[string]*deviceRec{}}
	data, err := os.ReadFile(filepath.Join(dir, registryFile))
	if errors.Is(err, os.ErrNotExist) {
		return reg, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, reg); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, registryFile), err)
	}
	if reg.Devices == nil {
		reg.Devices = map[string]*deviceRec{}
	}
	for _, d := range reg.Devices {
		if d.Modules == nil {
			d.Modules = map[string]*Module{}
		}
	}
	return reg, nil
}

func (reg *registry) save(dir string) error {
	data, err := json.MarshalIndent(reg, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, registryFile), data, 0o600)
}

// nextEtag returns a fresh etag shaped like IoT Hub's: base64 of a number.
func (reg *registry) nextEtag() string {
	reg.Seq++
	return base64.StdEncoding.EncodeToString([]byte(strconv.FormatUint(reg.Seq, 10)))
}

// nextGenerationID returns a fresh generation id shaped like IoT Hub's:
// 18 decimal digits (.NET ticks), unique in this registry.
func (reg *registry) nextGenerationID(now time.Time) string {
	reg.Seq++
	const ticksAtUnixEpoch = 621355968000000000
	return strconv.FormatInt(ticksAtUnixEpoch+now.UnixNano()/100+int64(reg.Seq%10000), 10)
}

// newKey makes a 32-byte base64 key as IoT Hub does for "sas" identities
// created without keys.
func newKey() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.StdEncoding.EncodeToString(b[:])
}

// normalizeAuth checks an authentication mechanism from a request or DPS,
// fills in generated keys for "sas" without keys (keeping old's keys when
// old is "sas" too) and returns a problem text or "".
func normalizeAuth(a *Authentication, old *Authentication) string {
	switch a.Type {
	case "":
		if a.X509Thumbprint != nil && (a.X509Thumbprint.PrimaryThumbprint != "" || a.X509Thumbprint.SecondaryThumbprint != "") {
			a.Type = AuthSelfSigned
		} else {
			a.Type = AuthSAS
		}
		return normalizeAuth(a, old)
	case AuthSAS:
		a.X509Thumbprint = nil
		if a.SymmetricKey == nil {
			a.SymmetricKey = &SymmetricKey{}
		}
		k := a.SymmetricKey
		if k.PrimaryKey == "" && k.SecondaryKey == "" && old != nil && old.Type == AuthSAS && old.SymmetricKey != nil {
			*k = *old.SymmetricKey
		}
		if k.PrimaryKey == "" {
			k.PrimaryKey = newKey()
		}
		if k.SecondaryKey == "" {
			k.SecondaryKey = newKey()
		}
		for _, v := range []string{k.PrimaryKey, k.SecondaryKey} {
			if _, err := DecodeKey(v); err != nil {
				return "symmetric key: " + err.Error()
			}
		}
	case AuthSelfSigned:
		a.SymmetricKey = nil
		t := a.X509Thumbprint
		if t == nil || t.PrimaryThumbprint == "" && t.SecondaryThumbprint == "" {
			return "selfSigned authentication needs x509Thumbprint"
		}
		for _, v := range []string{t.PrimaryThumbprint, t.SecondaryThumbprint} {
			if v != "" && !thumbprintPattern.MatchString(v) {
				return "thumbprint " + strconv.Quote(v) + " is not SHA-1 or SHA-256 hex"
			}
		}
		t.PrimaryThumbprint, t.SecondaryThumbprint = normThumb(t.PrimaryThumbprint), normThumb(t.SecondaryThumbprint)
	case AuthCertificateAuthority, AuthNone:
		a.SymmetricKey, a.X509Thumbprint = nil, nil
	default:
		return "authentication type " + strconv.Quote(a.Type) + " is not sas, selfSigned, certificateAuthority or none"
	}
	if a.SymmetricKey == nil {
		a.SymmetricKey = &SymmetricKey{}
	}
	if a.X509Thumbprint == nil {
		a.X509Thumbprint = &X509Thumbprint{}
	}
	return ""
}

// sasKeys returns the decoded keys of a "sas" identity; nil otherwise.
func sasKeys(a Authentication) [][]byte {
	if a.Type != AuthSAS || a.SymmetricKey == nil {
		return nil
	}
	var out [][]byte
	for _, v := range []string{a.SymmetricKey.PrimaryKey, a.SymmetricKey.SecondaryKey} {
		if k, err := base64.StdEncoding.DecodeString(v); err == nil && len(k) > 0 {
			out = append(out, k)
		}
	}
	return out
}
