package hub

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// SASPrefix starts every shared access signature in an Authorization header.
const SASPrefix = "SharedAccessSignature "

// SAS is a parsed Azure shared access signature
// ("SharedAccessSignature sr=...&sig=...&se=...[&skn=...]").
type SAS struct {
	// RawResource is sr exactly as sent (usually URL-encoded once); the
	// signature may have been computed over this form.
	RawResource string
	// Resource is sr URL-decoded: "{idScope}/registrations/{id}",
	// "{host}/devices/{id}", "{host}/devices/{id}/modules/{id}" or "{host}".
	Resource  string
	Signature []byte    // sig, decoded from URL-encoded base64
	Expiry    time.Time // se, seconds since the Unix epoch
	KeyName   string    // skn; "" when absent
}

// Errors of SAS parsing and verification; callers map them to 401.
var (
	ErrMalformedSAS = errors.New("malformed shared access signature")
	ErrExpiredSAS   = errors.New("shared access signature expired")
	ErrBadSignature = errors.New("shared access signature does not verify")
)

// maxSASLen bounds what ParseSAS reads; real tokens are a few hundred bytes.
const maxSASLen = 4096

// ParseSAS parses an Authorization header value. Fields may come in any
// order; sr, sig and se are required, skn is optional, other fields are
// ignored, a repeated field is an error.
func ParseSAS(header string) (*SAS, error) {
	rest, ok := strings.CutPrefix(header, SASPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: does not start with %q", ErrMalformedSAS, SASPrefix)
	}
	if len(rest) > maxSASLen {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrMalformedSAS, maxSASLen)
	}
	t := &SAS{}
	seen := map[string]bool{}
	var sig, se string
	for _, field := range strings.Split(strings.TrimSpace(rest), "&") {
		k, v, ok := strings.Cut(field, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%w: field %q is not key=value", ErrMalformedSAS, field)
		}
		if seen[k] {
			return nil, fmt.Errorf("%w: %s given twice", ErrMalformedSAS, k)
		}
		seen[k] = true
		switch k {
		case "sr":
			t.RawResource = v
		case "sig":
			sig = v
		case "se":
			se = v
		case "skn":
			t.KeyName = v
		}
	}
	if t.RawResource == "" || sig == "" || se == "" {
		return nil, fmt.Errorf("%w: sr, sig and se are required", ErrMalformedSAS)
	}
	var err error
	// PathUnescape, not QueryUnescape: a '+' in an unencoded base64
	// signature must stay a '+'.
	if t.Resource, err = url.PathUnescape(t.RawResource); err != nil {
		return nil, fmt.Errorf("%w: sr: %v", ErrMalformedSAS, err)
	}
	if t.KeyName, err = url.PathUnescape(t.KeyName); err != nil {
		return nil, fmt.Errorf("%w: skn: %v", ErrMalformedSAS, err)
	}
	sigText, err := url.PathUnescape(sig)
	if err != nil {
		return nil, fmt.Errorf("%w: sig: %v", ErrMalformedSAS, err)
	}
	if t.Signature, err = base64.StdEncoding.DecodeString(sigText); err != nil || len(t.Signature) != sha256.Size {
		return nil, fmt.Errorf("%w: sig is not a base64 HMAC-SHA256", ErrMalformedSAS)
	}
	secs, err := strconv.ParseInt(se, 10, 64)
	if err != nil || secs <= 0 || secs > 1<<40 {
		return nil, fmt.Errorf("%w: se %q is not seconds since 1970", ErrMalformedSAS, se)
	}
	t.Expiry = time.Unix(secs, 0)
	return t, nil
}

// StringsToSign are the strings a client may have signed for t: sr as
// sent, then sr encoded as the Azure SDKs do (Python, .NET, Node: "%2F";
// azure-sdk-for-c: "%2f"), then the decoded resource (raw sr, as some
// clients sign it). Each is followed by "\n" + se.
func (t *SAS) StringsToSign() []string {
	se := "\n" + strconv.FormatInt(t.Expiry.Unix(), 10)
	upper := EncodeResource(t.Resource)
	lower := strings.ReplaceAll(upper, "%2F", "%2f")
	var out []string
	for _, s := range []string{t.RawResource, upper, lower, t.Resource} {
		dup := false
		for _, o := range out {
			dup = dup || o == s+se
		}
		if !dup {
			out = append(out, s+se)
		}
	}
	return out
}

// Verify checks t against one of keys (each the decoded bytes of a base64
// key) and the clock; it does not look at the resource.
func (t *SAS) Verify(now time.Time, keys ...[]byte) error {
	if !now.Before(t.Expiry) {
		return fmt.Errorf("%w at %s", ErrExpiredSAS, t.Expiry.UTC().Format(time.RFC3339))
	}
	ok := false
	for _, k := range keys {
		if len(k) == 0 {
			continue
		}
		for _, s := range t.StringsToSign() {
			m := hmac.New(sha256.New, k)
			m.Write([]byte(s))
			if hmac.Equal(m.Sum(nil), t.Signature) {
				ok = true
			}
		}
	}
	if !ok {
		return ErrBadSignature
	}
	return nil
}

// EncodeResource URL-encodes a resource URI the way the Azure SDKs put it
// in sr ("host/devices/d" → "host%2Fdevices%2Fd").
func EncodeResource(resource string) string {
	return url.QueryEscape(resource)
}

// SignSAS makes a token like the Azure IoT SDKs: sr is the URL-encoded
// resource, the signature is base64(HMAC-SHA256(key, sr + "\n" + se)),
// skn is appended when keyName is not empty. key is the decoded key.
func SignSAS(key []byte, resource string, expiry time.Time, keyName string) string {
	sr := EncodeResource(resource)
	se := strconv.FormatInt(expiry.Unix(), 10)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(sr + "\n" + se))
	tok := SASPrefix + "sr=" + sr + "&sig=" + url.QueryEscape(base64.StdEncoding.EncodeToString(m.Sum(nil))) + "&se=" + se
	if keyName != "" {
		tok += "&skn=" + url.QueryEscape(keyName)
	}
	return tok
}

// DeriveKey returns the device key of a group enrollment:
// base64(HMAC-SHA256(base64decode(groupKey), registrationID)), as DPS and
// every Azure SDK compute it.
func DeriveKey(groupKey []byte, registrationID string) []byte {
	m := hmac.New(sha256.New, groupKey)
	m.Write([]byte(registrationID))
	return m.Sum(nil)
}

// DecodeKey decodes a base64 symmetric key, as IoT Hub and DPS hold them.
func DecodeKey(b64 string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("not base64: %w", err)
	}
	if len(k) < 16 || len(k) > 64 {
		return nil, fmt.Errorf("%d bytes; IoT Hub and DPS keys are 16 to 64 bytes", len(k))
	}
	return k, nil
}
