package keys

import (
	"fmt"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/edgev2/edgev2/fault"
)

// Token fault recovery. A token that goes away — a remote HSM whose server
// restarts (p11-kit server), a USB token unplugged and replugged, a TPM
// resource manager restarting — leaves the module's sessions, login and
// object handles dead. keyd then answers Unavailable at once, and in the
// background drops every session, finalises and re-initialises the module,
// logs in again (a PIN the token refused is never tried again) and has
// every key found again before its next use, with capped back-off, until
// the token is back. Callers never wait on the token. A token that stops
// answering instead of failing is caught by the watchdog (watchdog_pkcs11.go)
// and recovered the same way once its stuck calls return.

// Back-off between reconnection attempts.
const (
	recoverFirstDelay = 200 * time.Millisecond
	recoverMaxDelay   = 5 * time.Second
)

func nextRecoverDelay(d time.Duration) time.Duration {
	if d *= 2; d > recoverMaxDelay {
		return recoverMaxDelay
	}
	return d
}

// isTokenLost reports errors after which the module's state is gone, as
// opposed to one operation failing.
func isTokenLost(err error) bool {
	return isCKR(err, pkcs11.CKR_DEVICE_ERROR, pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_TOKEN_NOT_PRESENT,
		pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED, pkcs11.CKR_USER_NOT_LOGGED_IN)
}

// unavailable is the error of every call while the token is lost, or after
// a reconnection found its PIN refused.
func (s *p11Slot) unavailable() error {
	s.mu.Lock()
	dead := s.dead
	s.mu.Unlock()
	if dead != nil {
		return dead
	}
	s.mod.state.Lock()
	cause := s.mod.downCause
	s.mod.state.Unlock()
	if cause == "" {
		return nil
	}
	return fault.New(fault.Unavailable, "PKCS#11 token %q is unavailable (%s); keyd is reconnecting to it and resumes by itself", s.label, cause)
}

// lost marks the module down and starts the one recovery loop.
func (m *p11Module) lost(s *p11Slot, err error) {
	m.down(fmt.Sprintf("token %q", s.label), ckrName(err))
}

// down marks the module down for cause and starts the one recovery loop.
func (m *p11Module) down(who, cause string) {
	m.state.Lock()
	defer m.state.Unlock()
	if m.closed || m.recovering {
		return
	}
	m.downCause, m.recovering = cause, true
	m.log.Error("pkcs11 token lost; reconnecting", "library", m.path, "which", who, "err", cause)
	m.wg.Add(1)
	go m.recoverLoop()
}

func (m *p11Module) recoverLoop() {
	defer m.wg.Done()
	delay := recoverFirstDelay
	for attempt := 1; ; attempt++ {
		select {
		case <-m.stop:
			return
		case <-time.After(delay):
		}
		stopped, err := m.attempt()
		if stopped {
			return
		}
		if err == nil {
			m.state.Lock()
			m.hung.Store(false) // the gate was held alone: no call is stuck
			m.downCause, m.recovering = "", false
			m.state.Unlock()
			m.log.Info("pkcs11 token back; serving again", "library", m.path, "attempts", attempt)
			return
		}
		delay = nextRecoverDelay(delay)
		m.log.Warn("pkcs11 token still unavailable", "library", m.path, "attempt", attempt, "retry_in", delay.String(), "err", fault.Message(err), "cause", err)
		m.state.Lock()
		m.downCause = "reconnecting: " + fault.Message(err)
		m.state.Unlock()
	}
}

// attempt runs one reinit under the watchdog: holding the gate alone, got
// within p11CallLimit (a call stuck in the module keeps it), and waiting
// for reinit at most p11CallLimit (a stuck reinit keeps its goroutine and
// the gate until the module lets it return). stopped: the module was
// released meanwhile.
func (m *p11Module) attempt() (stopped bool, err error) {
	who := fmt.Sprintf("module %q", m.path)
	timer := time.NewTimer(p11CallLimit)
	defer timer.Stop()
	if _, ok := m.gate.acquire(true, timer.C, m.stop); !ok {
		select {
		case <-m.stop:
			return true, nil
		default:
		}
		return false, stuck(who, "an earlier call still stuck in it")
	}
	done := make(chan error, 1)
	go func() {
		defer m.gate.releaseExcl()
		done <- m.reinit()
	}()
	select {
	case err := <-done:
		return false, err
	case <-m.stop:
		return true, nil
	case <-timer.C:
		return false, stuck(who, "re-initialising it")
	}
}

// stuck is a failed attempt's error; recoverLoop says keyd is reconnecting.
func stuck(who, what string) error {
	return fault.New(fault.Unavailable, "PKCS#11 %s is not answering (%s gave no answer within %s)", who, what, p11CallLimit)
}

// reinit drops every session and login, finalises and re-initialises the
// module, and finds and logs in to each open slot's token again. No PKCS#11
// call runs meanwhile (the gate held alone), so no stale handle is used.
func (m *p11Module) reinit() error {
	m.state.Lock()
	slots := make([]*p11Slot, 0, len(m.slots))
	for s := range m.slots {
		slots = append(slots, s)
	}
	closed := m.closed
	m.state.Unlock()
	if closed {
		return nil
	}
	for _, s := range slots {
		s.dropSessions()
	}
	m.tokMu.Lock()
	m.toks = map[uint]*p11Token{} // every session is gone with the module state
	m.tokMu.Unlock()
	m.ctx.Finalize()
	// Handles from here on belong to a new generation.
	m.gen.Add(1)
	if err := m.ctx.Initialize(); err != nil && !isCKR(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		return fault.Wrap(fault.Unavailable, err, "initialise PKCS#11 module %q: %s", m.path, ckrName(err))
	}
	for _, s := range slots {
		if err := s.reopen(); err != nil {
			return err
		}
	}
	return nil
}

// dropSessions forgets the pool's sessions: the module is about to be
// finalised, which closes them all. Called with the gate held alone, so none
// is in use.
func (s *p11Slot) dropSessions() {
	for {
		select {
		case <-s.idle:
			<-s.permits
		default:
			return
		}
	}
}

// reopen finds the slot's token again (its slot id may have changed, as
// when a USB token is replugged) and logs in. A refused PIN makes the slot
// dead — never retried — without holding the module's other tokens down.
func (s *p11Slot) reopen() error {
	s.mu.Lock()
	skip := s.closed || s.dead != nil
	s.mu.Unlock()
	if skip {
		return nil
	}
	id, ti, err := findSlot(s.mod, s.uri, s.what)
	if err != nil {
		return fault.Wrap(fault.Unavailable, err, "%s", fault.Message(err))
	}
	if trimPad(ti.SerialNumber) != s.serial {
		return fault.New(fault.Unavailable, "%s now finds a token with serial %q, not %q; waiting for the original token", s.what, trimPad(ti.SerialNumber), s.serial)
	}
	pin, err := s.uri.PIN()
	if err != nil {
		return fault.Wrap(fault.Unavailable, err, "%s: %s", s.what, fault.Message(err))
	}
	if err := s.mod.login(id, s.label, s.serial, pin, ti.Flags&pkcs11.CKF_LOGIN_REQUIRED != 0, s.what); err != nil {
		if IsConfigProblem(err) {
			s.log.Error("pkcs11 token back, but its PIN is refused; its keys stay unavailable until keyd is restarted with the right PIN", "token", s.label, "err", fault.Message(err))
			s.mu.Lock()
			s.dead = err
			s.mu.Unlock()
			return nil
		}
		return err
	}
	s.id = id
	s.queryMechanisms(false)
	return nil
}
