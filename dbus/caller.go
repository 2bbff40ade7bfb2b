package dbus

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

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

// CallerProcess is the polkit unix-process subject of the process behind a
// bus name: the pid and uid the bus daemon vouches for, and the start time
// read from /proc, which tells a recycled pid apart. The caller is waiting
// for its reply while this runs, so its pid is not recycled meanwhile.
func CallerProcess(conn *godbus.Conn, sender string) (Process, error) {
	creds, err := CallerCredentials(conn, sender)
	if err != nil {
		return Process{}, err
	}
	if creds.PID == 0 {
		return Process{}, fmt.Errorf("credentials of %s: the bus did not report a pid", sender)
	}
	start, err := ProcessStartTime(int(creds.PID))
	if err != nil {
		return Process{}, fmt.Errorf("process of %s: %w", sender, err)
	}
	return Process{PID: creds.PID, StartTime: start, UID: creds.UID}, nil
}

// ProcessStartTime is field 22 of /proc/<pid>/stat (clock ticks since boot),
// what polkit compares for unix-process subjects.
func ProcessStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold anything,
	// spaces and ")" included: fields are counted after the last ")".
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(string(b[i+1:]))
	// fields[0] is field 3 (state); start time is field 22.
	if len(fields) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields)+2)
	}
	return strconv.ParseUint(fields[19], 10, 64)
}
