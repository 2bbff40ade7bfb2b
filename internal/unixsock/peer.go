package unixsock

import (
	"errors"

	"golang.org/x/sys/unix"
)

// soPeerPidfd is SO_PEERPIDFD (Linux 6.5; the generic value, as on amd64
// and arm64): a pidfd of the process that connected.
const soPeerPidfd = 77

// PeerPidfd returns a pidfd of the process that made the connection on
// socket fd, or -1 where the kernel has none to give (before 6.5). A pid
// from SO_PEERCRED names whatever process has that number now; the pidfd
// names the connecting process only, and tells when it has exited (after
// which its number may belong to another process).
func PeerPidfd(fd int) int {
	pidfd, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, soPeerPidfd)
	if err != nil || pidfd < 0 {
		return -1
	}
	unix.CloseOnExec(pidfd)
	return pidfd
}

// PidfdAlive reports whether the process of pidfd still runs (not yet
// exited): while it does, its pid is its own. A pidfd of -1 (none) is
// reported alive, so callers without pidfds keep their pid-only rule.
func PidfdAlive(pidfd int) bool {
	if pidfd < 0 {
		return true
	}
	err := unix.PidfdSendSignal(pidfd, 0, nil, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}
