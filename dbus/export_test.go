package dbus

import (
	"context"

	godbus "github.com/godbus/dbus/v5"
)

// MaxDecisionsPerSender is the polkit cache bound per caller.
const MaxDecisionsPerSender = maxDecisionsPerSender

// ChangedSignalsSeen is how many polkit Changed signals a has handled,
// from polkitd or forged.
func ChangedSignalsSeen(a *Authorizer) uint64 { return a.changedSeen.Load() }

// SetMaxDecisionsPerSender shrinks a's per-caller cache so tests can fill it.
func SetMaxDecisionsPerSender(a *Authorizer, n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.maxPerSender = n
}

// Follow runs c's Watch loop over signals the test feeds (in), as if they
// came from c.Conn, believing owner owns c.Dest at the start.
func Follow(ctx context.Context, c Caller, in <-chan *godbus.Signal, out chan *godbus.Signal, name, owner string) {
	c.follow(ctx, in, out, name, owner)
}

// WatchBuffer is how many signals a Watch channel holds.
const WatchBuffer = watchBuffer

// HandleSignal hands a the signal as if its connection had received it.
func HandleSignal(a *Authorizer, sig *godbus.Signal) { a.handleSignal(sig) }
