package dbus

import (
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
