package testenv

import (
	"context"
	"fmt"
	"os"
	"time"

	godbus "github.com/godbus/dbus/v5"
)

// OpenFDs is how many descriptors process pid holds.
func OpenFDs(t TB, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("descriptors of pid %d: %v", pid, err)
	}
	return len(ents)
}

// FDCall is a method call to an object of the daemon under test.
type FDCall struct {
	Path   godbus.ObjectPath
	Method string // interface.member
	Args   []any
}

// CheckAttachedFDsAreClosed makes each of calls(fd) 20 times on conn to
// dest, where fd is a descriptor (a pipe's end) the calls attach, answered,
// refused or not, and fails t when the daemon at pid holds more than a few
// descriptors more afterwards: a caller could otherwise exhaust them.
func CheckAttachedFDsAreClosed(t TB, daemon string, pid int, conn *godbus.Conn, dest string, calls func(fd godbus.UnixFD) []FDCall) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatalf("pipe: %v", err)
	}
	defer r.Close()
	defer w.Close()
	cs := calls(godbus.UnixFD(r.Fd()))
	before := OpenFDs(t, pid)
	const rounds = 20
	for range rounds {
		for _, c := range cs {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			conn.Object(dest, c.Path).CallWithContext(ctx, c.Method, 0, c.Args...)
			cancel()
		}
	}
	// The calls were answered: whatever the daemon holds now, it keeps.
	after := OpenFDs(t, pid)
	t.Logf("%s holds %d descriptors before, %d after %d calls with one attached", daemon, before, after, rounds*len(cs))
	if after-before > 8 {
		t.Fatalf("%s holds %d descriptors after %d calls that each attached one (%d before); they leak", daemon, after, rounds*len(cs), before)
	}
}
