// The watchdog on PKCS#11 calls. A token may stop answering without
// failing (a wedged HSM, a p11-kit server that accepts and never replies):
// its module then blocks in a C call that nothing can interrupt. Calls run
// on their caller's goroutine (the hot path costs one uncontended mutex
// round trip on the gate); one watchdog goroutine per module wakes every
// p11CallLimit/2 and, if a call has been in the module for p11CallLimit,
// marks the module not answering: recovery starts, and every later call
// on it fails Unavailable at once. The stuck call itself returns when the
// token answers. Nothing another caller waits for without a bound is held
// by such a call: the gate below is only ever waited for with a deadline.

package keys

import (
	"fmt"
	"sync"
	"time"

	"github.com/edgev2/edgev2/fault"
)

// p11CallLimit bounds the wait for one PKCS#11 call, or one recovery
// attempt: a token past it is reported as not answering. A var for tests.
var p11CallLimit = 30 * time.Second

// p11Epochs is the number of watchdog epochs whose calls the gate counts
// apart. The watchdog advances the epoch every limit/2, so a call counted
// p11Epochs-1 epochs back has been in the module for at least the limit
// (and at most 1.5 times it).
const p11Epochs = 4

// p11Gate is held shared by every PKCS#11 call on a module and alone by
// recovery (C_Finalize, C_Initialize) and by release (C_Finalize): the
// module is never finalised under a live call. Unlike a sync.RWMutex it is
// waited for with a deadline, so a call stuck in the module holds nobody
// else without a bound, and a pending exclusive holder does not hold new
// shared ones back. It also counts shared holders by the watchdog epoch
// they came in, which is how the watchdog finds a call stuck in the module
// without a timer per call.
type p11Gate struct {
	mu       sync.Mutex
	shared   int
	excl     bool
	waiters  int
	changed  chan struct{} // closed (and dropped) by a release that waiters may want
	epoch    uint
	inflight [p11Epochs]int // shared holders by epoch%p11Epochs they came in
}

// tryShared takes the gate shared if nobody holds it alone; the fast path.
// The returned ticket goes back to releaseShared.
func (g *p11Gate) tryShared() (ticket uint, ok bool) {
	g.mu.Lock()
	if g.excl {
		g.mu.Unlock()
		return 0, false
	}
	g.shared++
	ticket = g.epoch % p11Epochs
	g.inflight[ticket]++
	g.mu.Unlock()
	return ticket, true
}

// acquire waits until the gate is free for the caller (alone, if excl) and
// takes it; false if deadline or abort came first. ticket is for
// releaseShared (unused when excl).
func (g *p11Gate) acquire(excl bool, deadline <-chan time.Time, abort <-chan struct{}) (ticket uint, ok bool) {
	g.mu.Lock()
	for {
		if !g.excl && (!excl || g.shared == 0) {
			if excl {
				g.excl = true
			} else {
				g.shared++
				ticket = g.epoch % p11Epochs
				g.inflight[ticket]++
			}
			g.mu.Unlock()
			return ticket, true
		}
		if g.changed == nil {
			g.changed = make(chan struct{})
		}
		ch := g.changed
		g.waiters++
		g.mu.Unlock()
		ok := true
		select {
		case <-ch:
		case <-deadline:
			ok = false
		case <-abort:
			ok = false
		}
		g.mu.Lock()
		g.waiters--
		if !ok {
			g.mu.Unlock()
			return 0, false
		}
	}
}

// wakeLocked wakes the waiters, if any; called with mu held on a release
// that may let one in. Without waiters nothing is allocated or closed.
func (g *p11Gate) wakeLocked() {
	if g.waiters > 0 && g.changed != nil {
		close(g.changed)
		g.changed = nil
	}
}

func (g *p11Gate) releaseShared(ticket uint) {
	g.mu.Lock()
	g.shared--
	g.inflight[ticket]--
	if g.shared == 0 {
		g.wakeLocked() // only one waiting to hold it alone can be let in
	}
	g.mu.Unlock()
}

func (g *p11Gate) releaseExcl() {
	g.mu.Lock()
	g.excl = false
	g.wakeLocked()
	g.mu.Unlock()
}

// tick starts a new watchdog epoch and reports whether a shared holder
// from p11Epochs-1 epochs back is still in: a call that has been in the
// module for at least two ticks. Holders older still were reported by an
// earlier tick.
func (g *p11Gate) tick() (stuck bool) {
	g.mu.Lock()
	g.epoch++
	stuck = g.inflight[(g.epoch+1)%p11Epochs] > 0
	g.mu.Unlock()
	return stuck
}

// watchdog runs for the life of the module: every limit/2 it looks for a
// call in the module for limit or longer and, finding one, marks the
// module not answering.
func (m *p11Module) watchdog(limit time.Duration) {
	defer m.wg.Done()
	t := time.NewTicker(limit / 2)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		if m.gate.tick() && !m.hung.Load() {
			m.hung.Store(true)
			m.down(fmt.Sprintf("module %q", m.path), fmt.Sprintf("not answering: a call gave no answer within %s", limit))
		}
	}
}

// notAnswering is the error of a call the watchdog gave up on. who is
// "token \"label\"" or "module \"path\"".
func notAnswering(who, what string) error {
	return fault.New(fault.Unavailable, "PKCS#11 %s is not answering (%s gave no answer within %s); keyd is reconnecting to it and resumes by itself", who, what, p11CallLimit)
}

// call runs fn, which makes PKCS#11 calls on m, on the caller's goroutine,
// holding m's gate shared. A module the watchdog found not answering fails
// it Unavailable at once; so does a gate still held alone (by recovery or
// release stuck in the module) after p11CallLimit. A call that stops
// answering stays with its caller until the module lets it return; the
// watchdog reports it meanwhile.
func (m *p11Module) call(who, what string, fn func() error) error {
	if m.hung.Load() {
		return notAnswering(who, "an earlier call")
	}
	ticket, ok := m.gate.tryShared()
	if !ok {
		timer := time.NewTimer(p11CallLimit)
		ticket, ok = m.gate.acquire(false, timer.C, nil)
		timer.Stop()
		if !ok {
			m.down(who, "not answering: keyd is still waiting on an earlier call to it")
			return notAnswering(who, what)
		}
	}
	defer m.gate.releaseShared(ticket)
	if m.hung.Load() { // found not answering while we waited
		return notAnswering(who, "an earlier call")
	}
	return fn()
}
