package dbus

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
