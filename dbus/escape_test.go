package dbus

import (
	"strings"
	"testing"

	godbus "github.com/godbus/dbus/v5"
)

func TestEscapePathElementMatchesSystemd(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "_"},
		{"abcXYZ09", "abcXYZ09"},
		{"device-id", "device_2did"},
		{"../../etc/shadow", "_2e_2e_2f_2e_2e_2fetc_2fshadow"},
		{"a_b", "a_5fb"},
		{"\x00", "_00"},
		{"é", "_c3_a9"},
	}
	for _, tt := range tests {
		if got := EscapePathElement(tt.in); got != tt.want {
			t.Errorf("EscapePathElement(%q) = %q, want %q", tt.in, got, tt.want)
		}
		back, ok := UnescapePathElement(tt.want)
		if !ok || back != tt.in {
			t.Errorf("UnescapePathElement(%q) = %q, %v; want %q", tt.want, back, ok, tt.in)
		}
	}
}

func TestUnescapeRejectsNonCanonical(t *testing.T) {
	for _, in := range []string{"", "_", "a-b", "_4", "_4g", "_61", "_2E", "a/b"} {
		if in == "_" {
			continue
		}
		if _, ok := UnescapePathElement(in); ok {
			t.Errorf("UnescapePathElement(%q) accepted a non-canonical element", in)
		}
	}
}

func TestChildPathIsAlwaysValid(t *testing.T) {
	for _, id := range []string{"", "x", strings.Repeat("/", 4096), "a\x00b", "../.."} {
		p := ChildPath("/org/edgev2/Keys1", "keys", id)
		if !p.IsValid() {
			t.Errorf("ChildPath(%q) = %q is not a valid object path", id, p)
		}
	}
}

func FuzzEscapePathElement(f *testing.F) {
	for _, s := range []string{"", "a", "../../etc/shadow", "\x00\xff", "_5f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := EscapePathElement(s)
		if !godbus.ObjectPath("/x/" + e).IsValid() {
			t.Fatalf("escaped %q to %q, not a valid path element", s, e)
		}
		back, ok := UnescapePathElement(e)
		if !ok || back != s {
			t.Fatalf("round trip of %q gave %q, %v", s, back, ok)
		}
		// Any element that unescapes must escape back to itself (canonical form).
		if u, ok := UnescapePathElement(s); ok && EscapePathElement(u) != s {
			t.Fatalf("UnescapePathElement(%q) = %q, which escapes to %q", s, u, EscapePathElement(u))
		}
	})
}
