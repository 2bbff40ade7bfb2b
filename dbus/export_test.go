package dbus

// MaxDecisionsPerSender is the polkit cache bound per caller.
const MaxDecisionsPerSender = maxDecisionsPerSender

// SetMaxDecisionsPerSender shrinks a's per-caller cache so tests can fill it.
func SetMaxDecisionsPerSender(a *Authorizer, n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.maxPerSender = n
}
