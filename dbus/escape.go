package dbus

import (
	"fmt"

	godbus "github.com/godbus/dbus/v5"

	"github.com/edgev2/edgev2/internal/label"
)

// EscapePathElement escapes any string into one object-path element the way
// systemd does (bus_label_escape): [A-Za-z0-9] stay, every other byte becomes
// _xx in lower-case hex, and the empty string becomes "_".
func EscapePathElement(s string) string { return label.Escape(s) }

// UnescapePathElement reverses EscapePathElement. It reports false for text
// that EscapePathElement cannot have produced.
func UnescapePathElement(e string) (string, bool) { return label.Unescape(e) }

// ChildPath is the object path of entity id under collection (e.g.
// /org/edgev2/Keys1/keys/<escaped id>).
func ChildPath(root godbus.ObjectPath, collection, id string) godbus.ObjectPath {
	return godbus.ObjectPath(string(root) + "/" + collection + "/" + EscapePathElement(id))
}

// CheckPathID refuses an id unescaped from object path p that no entity can
// have, before anything is asked about it: ids of every service are 1 to 255
// bytes of UTF-8 text without control characters (label.ValidateID; module
// names are narrower still). So the empty id ("_", which would otherwise be
// authorized like the service itself, without the entity's detail), a
// megabyte id (which would travel to polkit, into the decision cache and
// back in the reply) and bytes no id holds are InvalidArgs for every caller
// alike, which reveals nothing: no entity has such an id. The error names
// the path (object paths are [A-Za-z0-9_/], safe to echo) when it is short.
func CheckPathID(p godbus.ObjectPath, id string) *godbus.Error {
	msg := label.ValidateID("the id it names", id)
	if msg == "" {
		return nil
	}
	return NewError(ErrInvalidArgs, fmt.Sprintf("object path %s: %s, which no entity has", shortPath(p), msg))
}

// maxEchoedPath bounds the object paths errors repeat: a caller's path can
// be megabytes long.
const maxEchoedPath = 320

// shortPath is p for an error message, cut when it is long.
func shortPath(p godbus.ObjectPath) string {
	if len(p) <= maxEchoedPath {
		return string(p)
	}
	return fmt.Sprintf("%s... (%d bytes)", p[:maxEchoedPath], len(p))
}
