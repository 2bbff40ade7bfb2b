// Package label escapes arbitrary strings into names safe for object paths
// and file names, the way systemd's bus_label_escape does.
package label

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Escape keeps [A-Za-z0-9] and turns every other byte into _xx (lower-case
// hex); the empty string becomes "_". The result never contains '/', '.', NUL.
func Escape(s string) string {
	if s == "" {
		return "_"
	}
	const hex = "0123456789abcdef"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isAlnum(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('_')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// Unescape reverses Escape; it reports false for text Escape cannot produce.
func Unescape(e string) (string, bool) {
	if e == "_" {
		return "", true
	}
	if e == "" {
		return "", false
	}
	var b strings.Builder
	b.Grow(len(e))
	for i := 0; i < len(e); i++ {
		c := e[i]
		switch {
		case isAlnum(c):
			b.WriteByte(c)
		case c == '_' && i+2 < len(e):
			hi, ok1 := unhex(e[i+1])
			lo, ok2 := unhex(e[i+2])
			v := hi<<4 | lo
			if !ok1 || !ok2 || isAlnum(v) { // isAlnum: not canonical
				return "", false
			}
			b.WriteByte(v)
			i += 2
		default:
			return "", false
		}
	}
	return b.String(), true
}

func isAlnum(c byte) bool {
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// MaxIDLen bounds entity ids (keys, certificates, modules) so escaped file
// names and object paths stay sane.
const MaxIDLen = 255

// ValidateID checks a caller-supplied id: 1..255 bytes of UTF-8 with no
// control characters. kind names the entity in the message ("key id").
func ValidateID(kind, id string) string {
	switch {
	case id == "":
		return kind + " is empty"
	case len(id) > MaxIDLen:
		return fmt.Sprintf("%s is %d bytes long; the limit is %d", kind, len(id), MaxIDLen)
	case !utf8.ValidString(id):
		return fmt.Sprintf("%s %q is not valid UTF-8", kind, id)
	case strings.IndexFunc(id, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
		return fmt.Sprintf("%s %q contains a control character", kind, id)
	}
	return ""
}
