package dbus

import (
	"fmt"

	godbus "github.com/godbus/dbus/v5"
)

// Credentials are what the bus daemon vouches for about a caller.
type Credentials struct {
	UID uint32
	PID uint32 // 0 if the bus could not tell
}

// CallerCredentials asks the bus daemon who owns a unique name
// (org.freedesktop.DBus.GetConnectionCredentials). Callers cannot forge
// these: the daemon takes them from the socket (SO_PEERCRED).
func CallerCredentials(conn *godbus.Conn, sender string) (Credentials, error) {
	var m map[string]godbus.Variant
	if err := conn.BusObject().Call("org.freedesktop.DBus.GetConnectionCredentials", 0, sender).Store(&m); err != nil {
		return Credentials{}, fmt.Errorf("credentials of %s: %w", sender, err)
	}
	uid, ok := m["UnixUserID"].Value().(uint32)
	if !ok {
		return Credentials{}, fmt.Errorf("credentials of %s: the bus did not report a uid", sender)
	}
	pid, _ := m["ProcessID"].Value().(uint32)
	return Credentials{UID: uid, PID: pid}, nil
}
