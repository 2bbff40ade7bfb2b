package testenv

import (
	"runtime"
	"syscall"

	"github.com/godbus/dbus/v5"
)

// ConnAs connects to the bus as user from inside the test process, so a
// test can hold a listening connection of a second uid and call on it. The
// bus takes the uid from the socket (SO_PEERCRED, fixed at connect), so
// only the connecting thread changes its ids, with raw syscalls (Go's
// Setresuid would change every thread), and changes them back at once.
// Needs root. The connection is closed on cleanup.
func (b *Bus) ConnAs(t TB, user string) *dbus.Conn {
	t.Helper()
	return b.ConnAsWith(t, user)
}

// ConnAsWith is ConnAs with godbus connection options (a test that serves a
// service in-process passes the service's own, as its daemon would).
func (b *Bus) ConnAsWith(t TB, user string, opts ...dbus.ConnOption) *dbus.Conn {
	t.Helper()
	cred := credential(t, user)
	type result struct {
		conn *dbus.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		restored := false
		defer func() {
			if restored {
				runtime.UnlockOSThread()
			} // else the thread ends with this goroutine, ids and all
		}()
		if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESGID, uintptr(cred.Gid), uintptr(cred.Gid), 0); e != 0 {
			done <- result{err: e}
			return
		}
		if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESUID, uintptr(cred.Uid), uintptr(cred.Uid), 0); e != 0 {
			syscall.RawSyscall(syscall.SYS_SETRESGID, 0, 0, 0)
			done <- result{err: e}
			return
		}
		conn, err := dbus.Connect(b.Address, opts...)
		_, _, e1 := syscall.RawSyscall(syscall.SYS_SETRESUID, 0, 0, 0)
		_, _, e2 := syscall.RawSyscall(syscall.SYS_SETRESGID, 0, 0, 0)
		restored = e1 == 0 && e2 == 0
		done <- result{conn, err}
	}()
	r := <-done
	if r.err != nil {
		t.Fatalf("connect to bus %s as %s: %v", b.Address, user, r.err)
	}
	t.Cleanup(func() { r.conn.Close() })
	return r.conn
}
