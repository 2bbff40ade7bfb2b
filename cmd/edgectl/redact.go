package main

import (
	"regexp"
	"strings"
)

// redacted replaces every secret in a support bundle.
const redacted = "REDACTED"

// inlineSecrets are secrets inside values: a connection string's
// SharedAccessKey, a PKCS#11 URI's pin-value, a SAS token's signature.
var inlineSecrets = regexp.MustCompile(`(?i)(SharedAccessKey=|pin-value=|[?&;]sig=|password=)[^;&?"' \t\r\n]*`)

// userinfo is a URL's user:password@ part.
var userinfo = regexp.MustCompile(`(?i)([a-z][a-z0-9+.-]*://[^/@\s:"']*:)[^/@\s"']*@`)

// redactText hides inline secrets in free text (service and module logs).
func redactText(s string) string {
	s = userinfo.ReplaceAllString(s, "${1}"+redacted+"@")
	return inlineSecrets.ReplaceAllString(s, "${1}"+redacted)
}

// secretName reports whether a TOML key (or table) name holds a secret:
// names with key, password, pin or secret in them, except settings that
// only name a key stored in the Keys service.
func secretName(name string) bool {
	n := strings.ToLower(strings.Trim(name, `"' `))
	switch n {
	case "key_id", "issuer_key", "identity_key", "bootstrap_identity_key", "edge_ca_key", "master_key",
		"key_algorithms", "rotate_key", "pkcs11_lib_path":
		return false
	}
	for _, w := range []string{"key", "password", "pin", "secret", "token", "authorization"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	// The super-config's inline key values ({ value = "..." }) and its
	// *_pk settings, which may hold one.
	return n == "value" || strings.HasSuffix(n, "_pk")
}

// redactTOML hides secrets in a config file: values of secret-named keys
// and of every key in a secret-named table become "REDACTED", and inline
// secrets (SharedAccessKey=, pin-value=) are hidden everywhere. It works
// line by line, so a config that does not parse is redacted too.
func redactTOML(text string) string {
	lines := strings.Split(text, "\n")
	out := make([]string, 0, len(lines))
	secretTable := false
	skipUntil := "" // closing delimiter of a redacted multi-line string
	for _, line := range lines {
		if skipUntil != "" {
			if strings.Contains(line, skipUntil) {
				skipUntil = ""
			}
			continue
		}
		trim := strings.TrimSpace(line)
		if strings.HasPrefix(trim, "[") {
			name := strings.Trim(trim, "[] \t")
			if i := strings.Index(name, "#"); i >= 0 {
				name = strings.TrimSpace(strings.Trim(name[:i], "[] \t"))
			}
			secretTable = false
			for _, part := range strings.Split(name, ".") {
				if secretName(part) {
					secretTable = true
				}
			}
			out = append(out, redactText(line))
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok || strings.HasPrefix(trim, "#") {
			out = append(out, redactText(line))
			continue
		}
		if !secretTable && !secretKey(key) {
			out = append(out, redactText(line))
			continue
		}
		v := strings.TrimSpace(value)
		for _, delim := range []string{`"""`, `'''`} {
			if strings.HasPrefix(v, delim) && !strings.Contains(v[3:], delim) {
				skipUntil = delim
			}
		}
		out = append(out, key+"= \""+redacted+"\"")
	}
	return strings.Join(out, "\n")
}

// secretKey reports whether any part of a dotted TOML key is secret-named
// ("symmetric_key.value").
func secretKey(key string) bool {
	for _, part := range strings.Split(strings.TrimSpace(key), ".") {
		if secretName(part) {
			return true
		}
	}
	return false
}
