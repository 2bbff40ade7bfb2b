package supportbundle

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// redacted replaces every secret in a support bundle.
const redacted = "REDACTED"

// inlineSecrets are secrets inside values: a connection string's
// SharedAccessKey, a PKCS#11 URI's pin-value, a SAS token's signature.
// A SAS token's sig may come first ("SharedAccessSignature sig=...").
// The value may be quoted as logfmt quotes one with a space ("a b"), or
// with escaped quotes inside a quoted value (err="... password=\"a b\"").
var inlineSecrets = regexp.MustCompile(`(?i)(SharedAccessKey=|pin-value=|\bsig=|password=)(?:` + quotedValue + `|[^;&?"' \t\r\n]*)`)

// quotedValue is a logfmt value in quotes, or in escaped quotes inside
// another quoted value; there a quote or backslash of the value is \\\"
// or \\\\, which does not end it.
const quotedValue = `\\"(?:\\\\\\\\|\\\\\\"|\\\\[^"\\]|\\[^"\\]|[^"\\])*\\"|"(?:[^"\\]|\\.)*"`

// logfmtSecret is a lowercase name=value whose name always means a secret
// (slog's own attributes name keys and tokens by id: key_id=, token=<label>).
var logfmtSecret = regexp.MustCompile(`(?i)\b([a-z0-9_.-]*(?:secret|passphrase|api_?key|access_?token|sas_?token|private_?key)[a-z0-9_.-]*=)(?:` + quotedValue + `|[^\s"'&;]*)`)

// userinfo is a URL's user:password@ part in free text; the password
// runs to the last '@' before the path (Go, curl and browsers end the
// userinfo there), so one holding '@' is hidden whole.
var userinfo = regexp.MustCompile(`(?i)([a-z][a-z0-9+.-]*://[^/@\s:"']*:)[^/\s"']*@`)

// valueUserinfo is the user:password@ part of a whole value that is a URL:
// there the password may also hold spaces and quotes.
var valueUserinfo = regexp.MustCompile(`^(\s*[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#@:]*:)[^/?#]*@`)

// bearer is an HTTP bearer token, or basic credentials after Authorization.
var bearer = regexp.MustCompile(`(?i)(\bbearer\s+|authorization:\s*basic\s+)[^\s"',;]+`)

// pemKey is a PEM private key block (or its start, in a truncated log).
var pemKey = regexp.MustCompile(`(?s)(-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----)(?:.*?-----END [A-Z0-9 ]*PRIVATE KEY-----|.*)`)

// envAssign is an environment variable as a log shows it (NAME=value,
// names in capitals as environments have them; slog's lowercase
// attributes such as key_id=... are not variables).
var envAssign = regexp.MustCompile(`\b([A-Z_][A-Z0-9_]*)=(` + quotedValue + `|[^\s"']*)`)

// jsonEnv is an environment entry as a JSON string ("NAME=value", in
// Docker's Env list as a log shows it): its value runs to the closing quote.
var jsonEnv = regexp.MustCompile(`"([A-Za-z_][A-Za-z0-9_.-]*)=((?:[^"\\]|\\.)*)"`)

// jsonMember is a JSON member with a string value as a log shows it
// ("password": "...", {"sharedAccessKey":"..."}); redacted when the name
// is secret.
var jsonMember = regexp.MustCompile(`"([A-Za-z_][A-Za-z0-9_.-]*)"(\s*:\s*)"((?:[^"\\]|\\.)*)"`)

// envString is a whole string "NAME=value": an entry of an environment
// list (Docker's createOptions.Env, edgeAgent's env).
var envString = regexp.MustCompile(`(?s)^([A-Za-z_][A-Za-z0-9_.-]*)=(.*)$`)

// RedactText hides inline secrets in free text (service and module logs).
func RedactText(s string) string {
	s = pemKey.ReplaceAllString(s, "${1} "+redacted)
	s = userinfo.ReplaceAllString(s, "${1}"+redacted+"@")
	s = bearer.ReplaceAllString(s, "${1}"+redacted)
	s = jsonMember.ReplaceAllStringFunc(s, func(a string) string {
		m := jsonMember.FindStringSubmatch(a)
		if secretName(m[1]) {
			return `"` + m[1] + `"` + m[2] + `"` + redacted + `"`
		}
		return a
	})
	s = jsonEnv.ReplaceAllStringFunc(s, func(a string) string {
		if name, _, _ := strings.Cut(a[1:], "="); secretName(name) {
			return `"` + name + "=" + redacted + `"`
		}
		return a
	})
	s = envAssign.ReplaceAllStringFunc(s, func(a string) string {
		if name, _, _ := strings.Cut(a, "="); secretName(name) {
			return name + "=" + redacted
		}
		return a
	})
	s = logfmtSecret.ReplaceAllStringFunc(s, func(a string) string {
		name, _, _ := strings.Cut(a, "=")
		if strings.HasSuffix(strings.ToLower(name), "_id") { // private_key_id= names a key
			return a
		}
		return name + "=" + redacted
	})
	return inlineSecrets.ReplaceAllString(s, "${1}"+redacted)
}

// notSecret are key names that look secret but only name a key stored in
// the Keys service, or a setting about keys.
var notSecret = map[string]bool{
	"key_id": true, "issuer_key": true, "identity_key": true, "bootstrap_identity_key": true,
	"edge_ca_key": true, "master_key": true, "workload_encryption_key": true, "key_algorithms": true,
	"rotate_key": true, "pkcs11_lib_path": true, "keys": true, "keys_manage": true, "keys_export": true,
}

// secretWords make a key name secret wherever they appear in it.
var secretWords = []string{"key", "password", "passphrase", "pin", "secret", "token", "sas",
	"authorization", "credential", "connection_string", "private"}

// secretName reports whether a key (or table) name holds a secret: the
// super-config schema's secret settings (device_id_pk, symmetric_key,
// group_key, est password, tpm hierarchy_authorization, connection_string,
// preloaded_keys) and any name that looks secret.
func secretName(name string) bool {
	n := strings.ToLower(strings.TrimSpace(name))
	if notSecret[n] {
		return false
	}
	for _, w := range secretWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	// The super-config's inline key values ({ value = "..." }) and its
	// *_pk settings, which may hold one.
	return n == "value" || strings.HasSuffix(n, "_pk")
}

// connStringKept are the connection string fields that stay: they say
// which hub and device, and hold nothing secret.
var connStringKept = map[string]bool{"hostname": true, "deviceid": true, "moduleid": true, "gatewayhostname": true}

// redactConnectionString keeps a connection string's hub and device and
// hides every other field.
func redactConnectionString(s string) string {
	parts := strings.Split(s, ";")
	for i, p := range parts {
		k, _, ok := strings.Cut(p, "=")
		if !ok || !connStringKept[strings.ToLower(strings.TrimSpace(k))] || strings.ContainsAny(p, "\n\r") {
			parts[i] = strings.TrimSpace(k) + "=" + redacted
			if !ok {
				parts[i] = redacted
			}
		}
	}
	return RedactText(strings.Join(parts, ";"))
}

// redactPKCS11URI hides a PKCS#11 URI's pin-value whole: RFC 7512 lets it
// hold any character but its separators raw (keyd logs in with "my pin"
// as written), so it ends at the next '&' in the query (';' in the path),
// not where inlineSecrets stops (a space, a quote, ';' or '?').
func redactPKCS11URI(s string) string {
	path, query, hasQuery := strings.Cut(s, "?")
	path = redactPINAttrs(path, ";")
	if hasQuery {
		path += "?" + redactPINAttrs(query, "&")
	}
	return RedactText(path)
}

// redactPINAttrs redacts the pin-value attributes of attrs joined by sep.
func redactPINAttrs(attrs, sep string) string {
	parts := strings.Split(attrs, sep)
	for i, a := range parts {
		if name, _, ok := strings.Cut(a, "="); ok && strings.EqualFold(strings.TrimSpace(name), "pin-value") {
			parts[i] = name + "=" + redacted
		}
	}
	return strings.Join(parts, sep)
}

// RedactTOML returns a config file for a support bundle. It parses the
// TOML (so inline tables, quoted or escaped key names, dotted keys,
// multi-line strings and arrays of tables are seen as the services see
// them) and writes it back with every value under a secret name replaced
// by "REDACTED", connection strings reduced to hub and device, inline
// secrets (pin-value=, SharedAccessKey=, URL passwords) hidden in every
// other string, and module specs' JSON redacted the same way. Comments are
// dropped: they may hold an old secret in any shape. A file that does not
// parse is not included, only where the parse failed.
func RedactTOML(text string) string {
	var tree map[string]any
	if err := toml.Unmarshal([]byte(text), &tree); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			return fmt.Sprintf("# not included: this file is not valid TOML (line %d, column %d); edgectl check names the problem\n", row, col)
		}
		return "# not included: this file is not valid TOML; edgectl check names the problem\n"
	}
	redactTable(tree)
	out, err := toml.Marshal(tree)
	if err != nil {
		return "# not included: the redacted file could not be written back\n"
	}
	return "# redacted by edgectl support-bundle: secrets are REDACTED, comments dropped, keys sorted\n" + string(out)
}

// redactTable redacts a table in place.
func redactTable(t map[string]any) {
	for _, k := range sortedNames(t) {
		if secretName(k) {
			t[k] = redactAll(t[k])
		} else {
			t[k] = redactValue(t[k])
		}
	}
}

// redactValue redacts what may hide in a value that is not itself secret.
func redactValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		redactTable(v)
		return v
	case []any:
		for i := range v {
			v[i] = redactValue(v[i])
		}
		return v
	case string:
		return redactString(v)
	default:
		return v
	}
}

// redactString hides inline secrets; a string holding a JSON object or
// array (a module spec) has its secret-named members redacted too, and a
// connection string keeps only its hub and device.
func redactString(s string) string {
	trim := strings.TrimSpace(s)
	if strings.HasPrefix(trim, "{") || strings.HasPrefix(trim, "[") {
		var j any
		if json.Unmarshal([]byte(trim), &j) == nil {
			j = redactJSON(j)
			if b, err := json.Marshal(j); err == nil {
				return string(b)
			}
			return redacted
		}
	}
	if len(trim) >= 7 && strings.EqualFold(trim[:7], "pkcs11:") {
		return redactPKCS11URI(s)
	}
	if strings.Contains(strings.ToLower(s), "sharedaccesskey") {
		return redactConnectionString(s)
	}
	if m := envString.FindStringSubmatch(s); m != nil && secretName(m[1]) {
		return m[1] + "=" + redacted
	}
	return RedactText(valueUserinfo.ReplaceAllString(s, "${1}"+redacted+"@"))
}

// redactJSON redacts a decoded JSON value with the TOML rules.
func redactJSON(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if secretName(k) {
				v[k] = redactAll(x)
			} else {
				v[k] = redactJSON(x)
			}
		}
		return v
	case []any:
		for i := range v {
			v[i] = redactJSON(v[i])
		}
		return v
	case string:
		return redactString(v)
	default:
		return v
	}
}

// redactAll replaces every leaf of a secret value, keeping tables' and
// arrays' shape (and a connection string's hub and device).
func redactAll(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k := range v {
			v[k] = redactAll(v[k])
		}
		return v
	case []any:
		for i := range v {
			v[i] = redactAll(v[i])
		}
		return v
	case string:
		if strings.Contains(strings.ToLower(v), "sharedaccesskey=") && !strings.ContainsAny(v, "\r\n") {
			return redactConnectionString(v)
		}
		return redacted
	default: // numbers, booleans, dates
		return redacted
	}
}

func sortedNames(t map[string]any) []string {
	ks := make([]string, 0, len(t))
	for k := range t {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
