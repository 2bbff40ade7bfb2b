package dbus

import (
	"fmt"
	"strings"
	"unicode/utf8"

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
// have: ids are UTF-8 text without NUL, and go into polkit details, logs and
// replies as D-Bus strings, which cannot hold anything else. The error is
// InvalidArgs naming the path (object paths are [A-Za-z0-9_/], safe to echo).
func CheckPathID(p godbus.ObjectPath, id string) *godbus.Error {
	if utf8.ValidString(id) && !strings.ContainsRune(id, 0) {
		return nil
	}
	return NewError(ErrInvalidArgs, fmt.Sprintf("object path %s: its last element unescapes to bytes that are not UTF-8 text without NUL, which no id is", p))
}
