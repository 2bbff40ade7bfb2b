// The watchdog on PKCS#11 calls. A token may stop answering without
// failing (a wedged HSM, a p11-kit server that accepts and never replies):
// its module then blocks in a C call that nothing can interrupt. keyd gives
// each call p11CallLimit; past it the caller gets Unavailable, the call
// keeps its goroutine, and the module is marked not answering. Nothing
// another caller waits for without a bound is held by such a call: the
// gate below is only ever waited for with a deadline.

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

// p11Gate is held shared by every PKCS#11 call on a module and alone by
// recovery (C_Finalize, C_Initialize) and by release (C_Finalize): the
// module is never finalised under a live call. Unlike a sync.RWMutex it is
// waited for with a deadline, so a call stuck in the module holds nobody
// else without a bound, and a pending exclusive holder does not hold new
// shared ones back.
type p11Gate struct {
	mu      sync.Mutex
	shared  int
	excl    bool
	changed chan struct{} // closed and replaced on every release
}

// acquire waits until the gate is free for the caller (alone, if excl) and
// takes it; false if deadline or abort came first.
func (g *p11Gate) acquire(excl bool, deadline <-chan time.Time, abort <-chan struct{}) bool {
	for {
		g.mu.Lock()
		if g.changed == nil {
			g.changed = make(chan struct{})
		}
		if !g.excl && (!excl || g.shared == 0) {
			if excl {
				g.excl = true
			} else {
				g.shared++
			}
			g.mu.Unlock()
			return true
		}
		ch := g.changed
		g.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			return false
		case <-abort:
			return false
		}
	}
}

func (g *p11Gate) release(excl bool) {
	g.mu.Lock()
	if excl {
		g.excl = false
	} else {
		g.shared--
	}
	if g.changed != nil {
		close(g.changed)
	}
	g.changed = make(chan struct{})
	g.mu.Unlock()
}

// notAnswering is the error of a call the watchdog gave up on. who is
// "token \"label\"" or "module \"path\"".
func notAnswering(who, what string) error {
	return fault.New(fault.Unavailable, "PKCS#11 %s is not answering (%s gave no answer within %s); keyd is reconnecting to it and resumes by itself", who, what, p11CallLimit)
}

// call runs fn, which makes PKCS#11 calls on m, holding m's gate shared,
// and waits for it at most p11CallLimit. Past that it marks the module not
// answering (which starts recovery) and returns Unavailable; fn goes on in
// its goroutine and releases the gate when the module lets it return.
// After a not-answering error the caller must not read what fn writes.
func (m *p11Module) call(who, what string, fn func() error) error {
	timer := time.NewTimer(p11CallLimit)
	defer timer.Stop()
	if !m.gate.acquire(false, timer.C, nil) {
		m.down(who, "not answering: keyd is still waiting on an earlier call to it")
		return notAnswering(who, what)
	}
	done := make(chan error, 1)
	go func() {
		defer m.gate.release(false)
		done <- fn()
	}()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		m.down(who, fmt.Sprintf("not answering: %s gave no answer within %s", what, p11CallLimit))
		return notAnswering(who, what)
	}
}
