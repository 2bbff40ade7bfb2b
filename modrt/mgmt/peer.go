package mgmt

import (
	"context"
	"net"
	"net/http"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/edgev2/edgev2/internal/unixsock"
)

// Peer is the process at the other end of a connection, as the kernel
// recorded it when it connected (SO_PEERCRED).
type Peer struct {
	Pid int32
	Uid uint32
	Gid uint32
	// pidfd is a pidfd of the connecting process (-1: the kernel gave
	// none). While that process runs, Pid is its own; once it has exited
	// the number may be another process's.
	pidfd int
}

// Alive reports whether the process that connected still runs, so that
// Pid (and Uid) are still about it. Without a pidfd it is assumed to.
func (p Peer) Alive() bool { return unixsock.PidfdAlive(p.pidfd) }

// pidfds holds the connections' pidfds until ConnState closes them.
var pidfds sync.Map // net.Conn → int

// ConnState is an http.Server ConnState that closes what ConnContext
// opened for a connection. Serve sets it; callers running their own
// http.Server with ConnContext set it too.
func ConnState(c net.Conn, st http.ConnState) {
	if st == http.StateClosed || st == http.StateHijacked {
		if fd, ok := pidfds.LoadAndDelete(c); ok {
			unix.Close(fd.(int))
		}
	}
}

type peerKey struct{}

// ConnContext is an http.Server ConnContext that records the peer
// credentials of Unix socket connections for the handlers. Serve sets it;
// callers running their own http.Server must set it too, or every
// agent-only request is refused.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *unix.Ucred
	pidfd := -1
	if err := raw.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		pidfd = unixsock.PeerPidfd(int(fd))
	}); err != nil || cred == nil {
		if pidfd >= 0 {
			unix.Close(pidfd)
		}
		return ctx
	}
	if pidfd >= 0 {
		pidfds.Store(c, pidfd)
	}
	return context.WithValue(ctx, peerKey{}, Peer{Pid: cred.Pid, Uid: cred.Uid, Gid: cred.Gid, pidfd: pidfd})
}

// PeerFrom returns the peer ConnContext recorded in ctx.
func PeerFrom(ctx context.Context) (Peer, bool) {
	p, ok := ctx.Value(peerKey{}).(Peer)
	return p, ok
}
