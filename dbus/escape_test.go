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

func TestChildIDOfResolvesOnlyItsCollection(t *testing.T) {
	const root = godbus.ObjectPath("/org/edgev2/Keys1")
	long := godbus.ObjectPath(string(root) + "/other/" + strings.Repeat("a", 100_000))
	tests := []struct {
		path    godbus.ObjectPath
		want    string
		errName string
	}{
		{ChildPath(root, "keys", "device-id"), "device-id", ""},
		{ChildPath(root, "keys", "../../etc/shadow"), "../../etc/shadow", ""},
		{root, "", "org.freedesktop.DBus.Error.UnknownObject"},
		{ChildPath(root, "certs", "device-id"), "", "org.freedesktop.DBus.Error.UnknownObject"},
		{ChildPath("/org/edgev2/Keys2", "keys", "x"), "", "org.freedesktop.DBus.Error.UnknownObject"},
		{root + "/keys/a/b", "", "org.freedesktop.DBus.Error.UnknownObject"},
		{root + "/keys/a-b", "", "org.freedesktop.DBus.Error.UnknownObject"}, // not canonical
		{ChildPath(root, "keys", ""), "", ErrInvalidArgs},                    // "_": no entity has the empty id
		{ChildPath(root, "keys", "a\x00b"), "", ErrInvalidArgs},              // NUL
		{ChildPath(root, "keys", "ctl\x1f"), "", ErrInvalidArgs},             // a control character
		{long, "", "org.freedesktop.DBus.Error.UnknownObject"},
	}
	for _, tt := range tests {
		id, e := ChildIDOf(root, "keys", tt.path)
		switch {
		case tt.errName == "" && (e != nil || id != tt.want):
			t.Errorf("ChildIDOf(%.60q) = %q, %v; want %q", tt.path, id, e, tt.want)
		case tt.errName != "" && (e == nil || e.Name != tt.errName):
			t.Errorf("ChildIDOf(%.60q) = %q, %v; want %s", tt.path, id, e, tt.errName)
		case e != nil && len(e.Error()) > 1000:
			t.Errorf("ChildIDOf(%.60q): the error repeats the whole path (%d bytes)", tt.path, len(e.Error()))
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
