package mgmt

import (
	"context"
	"net"

	"golang.org/x/sys/unix"
)

// Peer is the process at the other end of a connection, as the kernel
// recorded it when it connected (SO_PEERCRED).
type Peer struct {
	Pid int32
	Uid uint32
	Gid uint32
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
	if err := raw.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || cred == nil {
		return ctx
	}
	return context.WithValue(ctx, peerKey{}, Peer{Pid: cred.Pid, Uid: cred.Uid, Gid: cred.Gid})
}

// PeerFrom returns the peer ConnContext recorded in ctx.
func PeerFrom(ctx context.Context) (Peer, bool) {
	p, ok := ctx.Value(peerKey{}).(Peer)
	return p, ok
}
