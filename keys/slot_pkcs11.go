// Slots: one logged-in token and its session pool.

package keys

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/keys/pkcs11uri"
)

type p11Slot struct {
	mod    *p11Module
	id     uint // changes only under mod.gate held alone (recovery)
	label  string
	name   string // `token "label"`, for errors: made once, not per call
	serial string
	log    *slog.Logger
	uri    *pkcs11uri.URI // what found the token and its PIN, for recovery
	what   string         // the configuration uri came from
	dead   error          // a recovery found the PIN refused; guarded by mu

	idle    chan pkcs11.SessionHandle // sessions ready for use
	permits chan struct{}             // one per open pool session
	rawOAEP atomic.Bool               // the token refuses CKM_RSA_PKCS_OAEP with SHA-256
	mechs   atomic.Pointer[p11Mechanisms]

	mu       sync.Mutex
	closed   bool
	inflight int        // callers between session and put
	drained  *sync.Cond // signalled when inflight drops to 0
}

func trimPad(s string) string { return strings.TrimRight(s, " \x00") }

// openSlot finds the one token u names in mod and logs in to it, under the
// watchdog.
func (e *PKCS11Engine) openSlot(ctx context.Context, mod *p11Module, u *pkcs11uri.URI, what string) (*p11Slot, error) {
	var s *p11Slot
	err := mod.call(fmt.Sprintf("module %q", mod.path), "opening "+what, func() error {
		id, ti, err := findSlot(mod, u, what)
		if err != nil {
			return err
		}
		pin, err := u.PIN()
		if err != nil {
			return asConfigProblem(fault.Wrap(fault.Unavailable, err, "%s: %s", what, fault.Message(err)))
		}
		label, serial := trimPad(ti.Label), trimPad(ti.SerialNumber)
		needLogin := ti.Flags&pkcs11.CKF_LOGIN_REQUIRED != 0
		if err := mod.login(id, label, serial, pin, needLogin, what); err != nil {
			e.log.Error("pkcs11 login failed", "library", mod.path, "token", label, "slot", id, "config", what, "err", fault.Message(err))
			return err
		}
		s = &p11Slot{
			mod: mod, id: id, label: label, name: fmt.Sprintf("token %q", label), serial: serial, log: e.log, uri: u, what: what,
			idle:    make(chan pkcs11.SessionHandle, e.pool),
			permits: make(chan struct{}, e.pool),
		}
		s.drained = sync.NewCond(&s.mu)
		s.queryMechanisms(true)
		return nil
	})
	if err != nil {
		return nil, err
	}
	mod.retain()
	mod.state.Lock()
	mod.slots[s] = true
	mod.log = e.log
	mod.state.Unlock()
	e.log.Info("pkcs11 token opened", "library", mod.path, "token", s.label, "serial", s.serial, "slot", s.id, "mechanisms", len(s.mechanisms()))
	return s, nil
}

// findSlot returns the single token-bearing slot that matches u's token,
// slot and library attributes.
func findSlot(mod *p11Module, u *pkcs11uri.URI, what string) (uint, pkcs11.TokenInfo, error) {
	shown := u.WithoutObject().String()
	if !libraryMatches(mod.info, u) {
		return 0, pkcs11.TokenInfo{}, asConfigProblem(fault.New(fault.Unavailable, "%s %s: the library attributes do not match module %q", what, shown, mod.path))
	}
	ids, err := mod.ctx.GetSlotList(true)
	if err != nil {
		return 0, pkcs11.TokenInfo{}, fault.Wrap(fault.Unavailable, err, "list slots of PKCS#11 module %q: %s", mod.path, ckrName(err))
	}
	var found []uint
	var info pkcs11.TokenInfo
	for _, id := range ids {
		if u.HasSlotID && u.SlotID != id {
			continue
		}
		si, err := mod.ctx.GetSlotInfo(id)
		if err != nil {
			continue
		}
		ti, err := mod.ctx.GetTokenInfo(id)
		if err != nil || ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
			continue
		}
		if slotMatches(u, si, ti) {
			found = append(found, id)
			info = ti
		}
	}
	switch len(found) {
	case 0:
		return 0, info, asConfigProblem(fault.New(fault.Unavailable, "%s %s matches no token in PKCS#11 module %q", what, shown, mod.path))
	case 1:
		return found[0], info, nil
	}
	return 0, info, asConfigProblem(fault.New(fault.InvalidArgs, "%s %s matches %d tokens in PKCS#11 module %q; add token= or serial= to pick one", what, shown, len(found), mod.path))
}

func libraryMatches(info pkcs11.Info, u *pkcs11uri.URI) bool {
	if u.LibraryManufacturer != "" && u.LibraryManufacturer != trimPad(info.ManufacturerID) {
		return false
	}
	if u.LibraryDescription != "" && u.LibraryDescription != trimPad(info.LibraryDescription) {
		return false
	}
	if ma, mi, ok := u.LibraryVersionNumbers(); ok && (ma != info.LibraryVersion.Major || mi != info.LibraryVersion.Minor) {
		return false
	}
	return true
}

func slotMatches(u *pkcs11uri.URI, si pkcs11.SlotInfo, ti pkcs11.TokenInfo) bool {
	eq := func(want, have string) bool { return want == "" || want == trimPad(have) }
	return eq(u.Token, ti.Label) && eq(u.Manufacturer, ti.ManufacturerID) &&
		eq(u.Serial, ti.SerialNumber) && eq(u.Model, ti.Model) &&
		eq(u.SlotDescription, si.SlotDescription) && eq(u.SlotManufacturer, si.ManufacturerID)
}

// namesToken reports whether u says anything about which token or library to use.
func namesToken(u *pkcs11uri.URI) bool {
	return u.Token != "" || u.Manufacturer != "" || u.Serial != "" || u.Model != "" ||
		u.HasSlotID || u.SlotDescription != "" || u.SlotManufacturer != "" ||
		u.LibraryManufacturer != "" || u.LibraryDescription != "" || u.LibraryVersion != ""
}

// session takes a session from the pool, opening one if fewer than the pool
// size are open, or waits for one. Every successful call is matched by put.
func (s *p11Slot) session(ctx context.Context) (pkcs11.SessionHandle, error) {
	// Count the caller in before touching the module, so close waits for it
	// and the module is not finalised under its feet.
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 0, s.closedErr()
	}
	s.inflight++
	s.mu.Unlock()

	select {
	case h := <-s.idle:
		return h, nil
	default:
	}
	select {
	case h := <-s.idle:
		return h, nil
	case s.permits <- struct{}{}:
		if s.isClosed() {
			<-s.permits
			s.done()
			return 0, s.closedErr()
		}
		h, err := s.mod.ctx.OpenSession(s.id, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			<-s.permits
			s.done()
			return 0, fault.Wrap(fault.Unavailable, err, "open a session on PKCS#11 token %q: %s", s.label, ckrName(err))
		}
		return h, nil
	case <-ctx.Done():
		s.done()
		return 0, fault.Wrap(fault.Unavailable, ctx.Err(), "wait for a PKCS#11 session on token %q: %v", s.label, ctx.Err())
	}
}

// put returns a session to the pool, or closes it if the slot is closing
// or the token said the session is no longer usable.
func (s *p11Slot) put(h pkcs11.SessionHandle, err error) {
	if s.isClosed() || isCKR(err, pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED,
		pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_TOKEN_NOT_PRESENT, pkcs11.CKR_DEVICE_ERROR) {
		s.mod.ctx.CloseSession(h)
		<-s.permits
	} else {
		s.idle <- h
	}
	s.done()
}

func (s *p11Slot) done() {
	s.mu.Lock()
	s.inflight--
	if s.inflight == 0 {
		s.drained.Broadcast()
	}
	s.mu.Unlock()
}

func (s *p11Slot) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *p11Slot) closedErr() error {
	return fault.New(fault.Unavailable, "PKCS#11 token %q is closed", s.label)
}

// withSession runs fn on a pooled session. While the token is lost and
// being reconnected it answers Unavailable at once; an error that says the
// token or module is gone starts the reconnection. fn runs under the
// watchdog (m.call): the caller must not read what fn writes unless
// withSession returns nil.
func (s *p11Slot) withSession(ctx context.Context, fn func(pkcs11.SessionHandle) error) error {
	if err := s.unavailable(); err != nil {
		return err
	}
	err := s.mod.call(s.who(), "a call", func() error {
		if err := s.unavailable(); err != nil { // recovered or lost while we waited
			return err
		}
		h, err := s.session(ctx)
		if err == nil {
			err = fn(h)
			s.put(h, err)
		}
		return err
	})
	if isTokenLost(err) {
		s.mod.lost(s, err)
		return fault.Wrap(fault.Unavailable, err, "PKCS#11 token %q is unavailable (%s); keyd is reconnecting to it and resumes by itself", s.label, ckrName(err))
	}
	return err
}

func (s *p11Slot) who() string { return s.name }

// close waits for operations in flight, closes the pool's sessions and
// gives up this slot's share of the token login. Its waits are bounded: a
// slot whose calls are stuck in a token that does not answer is abandoned,
// sessions, login and all.
func (s *p11Slot) close() {
	s.mod.state.Lock()
	delete(s.mod.slots, s)
	s.mod.state.Unlock()
	drained := make(chan struct{})
	go func() {
		s.mu.Lock()
		s.closed = true
		for s.inflight > 0 {
			s.drained.Wait()
		}
		s.mu.Unlock()
		close(drained)
	}()
	timer := time.NewTimer(p11CallLimit)
	defer timer.Stop()
	select {
	case <-drained:
	case <-timer.C:
		s.log.Warn("pkcs11 token not answering; closed without waiting for its calls", "token", s.label)
		return
	}
	err := s.mod.call(s.who(), "closing its sessions", func() error {
		for {
			select {
			case h := <-s.idle:
				s.mod.ctx.CloseSession(h)
				<-s.permits
			default:
				s.mod.logout(s.id)
				return nil
			}
		}
	})
	if err != nil {
		s.log.Warn("pkcs11 token not answering; closed without logging out", "token", s.label)
	}
}

// samePIN refuses a URI whose own PIN differs from the PIN the token is
// logged in with: the token would accept the key without asking, hiding a
// wrong PIN until the next restart on another device.
func (s *p11Slot) samePIN(u *pkcs11uri.URI, what string) error {
	if !u.HasPIN() {
		return nil
	}
	pin, err := u.PIN()
	if err != nil {
		return asConfigProblem(fault.Wrap(fault.Unavailable, err, "%s: %s", what, fault.Message(err)))
	}
	// Under the watchdog: tokMu may be held by a login stuck in the token.
	return s.mod.call(s.who(), "checking the PIN of "+what, func() error {
		s.mod.tokMu.Lock()
		defer s.mod.tokMu.Unlock()
		t := s.mod.toks[s.id]
		if t == nil || !t.loggedIn || refusedKey(s.mod.path, s.serial, s.label, pin) == t.pinSum {
			return nil
		}
		return asConfigProblem(fault.New(fault.Unavailable, "the PIN in %s differs from the PIN that logged in to PKCS#11 token %q through %s; a token has one user PIN, so this one is wrong (fix it and restart)", what, s.label, t.loginBy))
	})
}

// queryMechanisms asks the token what it offers and says which kinds of
// keys it cannot hold.
func (s *p11Slot) queryMechanisms(warn bool) {
	ms, err := queryMechanisms(s.mod.ctx, s.id)
	if err != nil {
		s.log.Warn("pkcs11 token does not list its mechanisms; keys it cannot use are refused only at use", "token", s.label, "err", ckrName(err))
		s.mechs.Store(nil)
		return
	}
	s.mechs.Store(&ms)
	if !warn {
		return
	}
	for _, spec := range []Spec{{Type: ECP256}, {Type: RSA2048}, {Type: Symmetric, Usage: UsageSign}, {Type: Symmetric, Usage: UsageEncrypt}} {
		if err := ms.supports(s.label, "*", spec, true); err != nil {
			s.log.Warn("pkcs11 token cannot hold some keys", "token", s.label, "type", spec.String(), "reason", fault.Message(err))
		}
	}
}

// mechanisms is what the token offers; nil if it would not say.
func (s *p11Slot) mechanisms() p11Mechanisms {
	if p := s.mechs.Load(); p != nil {
		return *p
	}
	return nil
}

// TokenMechanisms names the mechanisms the base token offers, sorted; nil
// without a base token or when it would not say.
func (e *PKCS11Engine) TokenMechanisms() []string {
	if e.base == nil {
		return nil
	}
	return e.base.mechanisms().names()
}

// location is the key's PKCS#11 URI, without PIN.
func (s *p11Slot) location(label string, id []byte) string {
	u := &pkcs11uri.URI{Token: s.label, Serial: s.serial, Object: label, ID: id}
	if label != "" {
		u.ID = nil
	}
	return u.String()
}
