package sas

import (
	"encoding/base64"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/edgev2/edgev2/fault"
)

// ParsedToken is a SAS token taken apart, for tests and diagnostics.
// Values are decoded; Signature holds the raw HMAC bytes.
type ParsedToken struct {
	Resource  string    // sr, percent-decoded
	Signature []byte    // sig, percent- and base64-decoded
	Expiry    time.Time // se
	KeyName   string    // skn, percent-decoded; "" when absent
	// Signed is the exact string the signature covers: the sr value as
	// written in the token, "\n", the se value as written.
	Signed string
}

// maxTokenLen bounds what ParseToken looks at; real tokens are a few
// hundred bytes.
const maxTokenLen = 8 << 10

// ParseToken parses "SharedAccessSignature sr=...&sig=...&se=...[&skn=...]"
// with its fields in any order, as the services accept it. It rejects
// unknown or repeated fields. Errors never quote the signature.
func ParseToken(s string) (ParsedToken, error) {
	var t ParsedToken
	if len(s) > maxTokenLen {
		return t, fault.New(fault.InvalidArgs, "SAS token is longer than %d bytes", maxTokenLen)
	}
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return t, fault.New(fault.InvalidArgs, "SAS token does not start with %q", prefix)
	}
	var rawSR, rawSE string
	seen := map[string]bool{}
	for _, field := range strings.Split(rest, "&") {
		name, value, ok := strings.Cut(field, "=")
		if !ok || name == "" {
			return t, fault.New(fault.InvalidArgs, "SAS token has a field without name=value")
		}
		if seen[name] {
			return t, fault.New(fault.InvalidArgs, "SAS token repeats field %q", safeName(name))
		}
		seen[name] = true
		switch name {
		case "sr":
			v, err := url.PathUnescape(value)
			if err != nil || v == "" {
				return t, fault.New(fault.InvalidArgs, "SAS token field sr is empty or badly percent-encoded")
			}
			rawSR, t.Resource = value, v
		case "sig":
			v, err := url.PathUnescape(value)
			if err != nil {
				return t, fault.New(fault.InvalidArgs, "SAS token field sig is badly percent-encoded")
			}
			mac, err := base64.StdEncoding.DecodeString(v)
			if err != nil || len(mac) == 0 {
				return t, fault.New(fault.InvalidArgs, "SAS token field sig is not base64")
			}
			t.Signature = mac
		case "se":
			if value == "" || strings.Trim(value, "0123456789") != "" {
				return t, fault.New(fault.InvalidArgs, "SAS token field se is not a number of seconds")
			}
			secs, err := strconv.ParseInt(value, 10, 64)
			if err != nil || secs > 1<<40 {
				return t, fault.New(fault.InvalidArgs, "SAS token field se is out of range")
			}
			rawSE, t.Expiry = value, time.Unix(secs, 0).UTC()
		case "skn":
			v, err := url.PathUnescape(value)
			if err != nil || v == "" {
				return t, fault.New(fault.InvalidArgs, "SAS token field skn is empty or badly percent-encoded")
			}
			t.KeyName = v
		default:
			return t, fault.New(fault.InvalidArgs, "SAS token has unknown field %q", safeName(name))
		}
	}
	for _, f := range []string{"sr", "sig", "se"} {
		if !seen[f] {
			return t, fault.New(fault.InvalidArgs, "SAS token lacks field %s", f)
		}
	}
	t.Signed = rawSR + "\n" + rawSE
	return t, nil
}

// safeName keeps a field name printable and short enough to quote.
func safeName(s string) string {
	if len(s) > 32 {
		s = s[:32]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

// SignatureForms are the shapes in which a server might quote back the
// signature of token tok: as written in the token (percent-encoded), in
// base64, and the raw HMAC bytes; nil when tok does not parse. Clients
// scrub them from the server text they put in errors.
func SignatureForms(tok string) []string {
	p, err := ParseToken(tok)
	if err != nil {
		return nil
	}
	var written string
	for _, field := range strings.Split(strings.TrimPrefix(tok, prefix), "&") {
		if v, ok := strings.CutPrefix(field, "sig="); ok {
			written = v
		}
	}
	return []string{written, base64.StdEncoding.EncodeToString(p.Signature), string(p.Signature)}
}
