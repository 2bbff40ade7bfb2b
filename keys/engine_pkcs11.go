package keys

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/miekg/pkcs11"

	"github.com/edgev2/edgev2/internal/fault"
	"github.com/edgev2/edgev2/keys/pkcs11uri"
)

// PKCS11Config configures the PKCS#11 engine.
type PKCS11Config struct {
	LibPath  string // the module, e.g. /usr/lib/softhsm/libsofthsm2.so
	BaseSlot string // RFC 7512 URI of the token new keys go to, with its PIN
	PoolSize int    // sessions kept open per token; default 8
	Logger   *slog.Logger
}

const defaultPKCS11PoolSize = 8

// trashPrefix marks objects a Move is about to destroy. Key ids cannot hold
// control characters (ValidateID), so no key id collides with a trash label.
const trashPrefix = "\x7fedgev2-trash\x7f"

// PKCS11Engine keeps keys on a PKCS#11 token. Private and secret keys are
// created non-extractable on the token; the engine only asks it to use them.
type PKCS11Engine struct {
	log  *slog.Logger
	mod  *p11Module
	base *p11Slot // nil when no pkcs11_base_slot is configured
	pool int

	writeMu sync.Mutex // serialises Generate/Import/Delete/Move on the base token

	mu     sync.Mutex
	others map[string]*p11Slot // tokens reached through OpenURI, by module path and slot id
	closed bool
}

var _ Engine = (*PKCS11Engine)(nil)

// OpenPKCS11 loads the module, finds the token cfg.BaseSlot names and logs
// in to it once. A wrong PIN is reported as fault.Unavailable and never
// retried: tokens lock after a few wrong PINs.
func OpenPKCS11(ctx context.Context, cfg PKCS11Config) (*PKCS11Engine, error) {
	if cfg.LibPath == "" {
		return nil, fault.New(fault.InvalidArgs, "pkcs11_lib_path is not set")
	}
	e, err := newPKCS11Engine(cfg.LibPath, cfg.PoolSize, cfg.Logger)
	if err != nil {
		return nil, err
	}
	if cfg.BaseSlot == "" {
		return e, nil
	}
	u, err := pkcs11uri.Parse(cfg.BaseSlot)
	if err != nil {
		e.Close()
		return nil, fault.Wrap(fault.InvalidArgs, err, "pkcs11_base_slot: %s", fault.Message(err))
	}
	slot, err := e.openSlot(ctx, e.mod, u, "pkcs11_base_slot")
	if err != nil {
		e.Close()
		return nil, err
	}
	e.base = slot
	if err := e.recoverMoves(ctx); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// OpenPKCS11Module loads a PKCS#11 module without a base token, so a keyd
// using the file engine can still use preloaded pkcs11: keys through
// OpenURI. Generate, Import, Open, Delete, Move and List then fail with
// fault.InvalidArgs.
func OpenPKCS11Module(ctx context.Context, libPath string, logger *slog.Logger) (*PKCS11Engine, error) {
	return OpenPKCS11(ctx, PKCS11Config{LibPath: libPath, Logger: logger})
}

func newPKCS11Engine(libPath string, poolSize int, logger *slog.Logger) (*PKCS11Engine, error) {
	if logger == nil {
		logger = slog.Default()
	}
	if poolSize <= 0 {
		poolSize = defaultPKCS11PoolSize
	}
	mod, err := acquireModule(libPath)
	if err != nil {
		return nil, err
	}
	return &PKCS11Engine{log: logger, mod: mod, pool: poolSize, others: map[string]*p11Slot{}}, nil
}

// Name implements Engine.
func (e *PKCS11Engine) Name() string { return "pkcs11" }

// Close returns all sessions, logs out and finalises the module when no
// other engine in the process still uses it.
func (e *PKCS11Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	slots := make([]*p11Slot, 0, len(e.others)+1)
	if e.base != nil {
		slots = append(slots, e.base)
	}
	for _, s := range e.others {
		slots = append(slots, s)
	}
	e.others = nil
	e.mu.Unlock()

	mods := map[*p11Module]int{}
	for _, s := range slots {
		s.close()
		mods[s.mod]++
	}
	// Each slot holds a module reference; the engine holds one more.
	for m, n := range mods {
		for i := 0; i < n; i++ {
			m.release()
		}
	}
	e.mod.release()
	return nil
}

func (e *PKCS11Engine) needBase() (*p11Slot, error) {
	if e.base == nil {
		return nil, fault.New(fault.InvalidArgs, "no pkcs11_base_slot configured: the pkcs11 engine can only use preloaded pkcs11: keys")
	}
	return e.base, nil
}

// ---------------------------------------------------------------------------
// Modules and tokens shared by every engine in the process. A PKCS#11 module
// is initialised once per process and a login belongs to the application,
// not to a session, so both are reference-counted here.

type p11Module struct {
	path string
	ctx  *pkcs11.Ctx
	info pkcs11.Info
	refs int                // guarded by modules.mu
	toks map[uint]*p11Token // guarded by modules.mu

	// opMu is held shared by every PKCS#11 call on a session or slot and
	// alone by recovery, which finalises and re-initialises the module.
	opMu sync.RWMutex
	// gen counts re-initialisations: object handles found before the last
	// one are stale (and may name another object now).
	gen atomic.Uint64

	state      sync.Mutex
	slots      map[*p11Slot]bool // open slots, re-logged-in by recovery
	downCause  string            // why the module is down ("CKR_DEVICE_ERROR"); "" when up
	recovering bool
	closed     bool
	stop       chan struct{} // closed when the last reference goes
	wg         sync.WaitGroup
	log        *slog.Logger
}

type p11Token struct {
	refs      int
	loginSess pkcs11.SessionHandle // kept open: closing a token's last session logs it out
	hasSess   bool
	loggedIn  bool
	// pinSum identifies the PIN that logged in (never the PIN itself) and
	// loginBy names the configuration it came from: a second configuration
	// with another PIN for the same token has a wrong one, even though the
	// token, already logged in, would accept any.
	pinSum  [32]byte
	loginBy string
}

var modules = struct {
	sync.Mutex
	m       map[string]*p11Module
	refused map[[32]byte]bool // (module, token, PIN) the token refused; never tried again in this process
}{m: map[string]*p11Module{}, refused: map[[32]byte]bool{}}

// refusedKey identifies a PIN for a token without keeping the PIN.
func refusedKey(lib, serial, label, pin string) [32]byte {
	return sha256.Sum256([]byte(lib + "\x00" + serial + "\x00" + label + "\x00" + pin))
}

func acquireModule(path string) (*p11Module, error) {
	modules.Lock()
	defer modules.Unlock()
	if m := modules.m[path]; m != nil {
		m.refs++
		return m, nil
	}
	ctx := pkcs11.New(path)
	if ctx == nil {
		return nil, fault.New(fault.Unavailable, "cannot load PKCS#11 module %q (pkcs11_lib_path): missing file or not a PKCS#11 library", path)
	}
	if err := ctx.Initialize(); err != nil && !isCKR(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		ctx.Destroy()
		return nil, fault.Wrap(fault.Unavailable, err, "initialise PKCS#11 module %q: %s", path, ckrName(err))
	}
	info, err := ctx.GetInfo()
	if err != nil {
		ctx.Finalize()
		ctx.Destroy()
		return nil, fault.Wrap(fault.Unavailable, err, "PKCS#11 module %q: C_GetInfo: %s", path, ckrName(err))
	}
	m := &p11Module{path: path, ctx: ctx, info: info, refs: 1, toks: map[uint]*p11Token{},
		slots: map[*p11Slot]bool{}, stop: make(chan struct{}), log: slog.Default()}
	modules.m[path] = m
	return m, nil
}

func (m *p11Module) retain() {
	modules.Lock()
	m.refs++
	modules.Unlock()
}

func (m *p11Module) release() {
	modules.Lock()
	m.refs--
	if m.refs > 0 {
		modules.Unlock()
		return
	}
	delete(modules.m, m.path)
	modules.Unlock()
	m.state.Lock()
	m.closed = true
	close(m.stop)
	m.state.Unlock()
	m.wg.Wait() // the recovery loop, if one runs
	m.opMu.Lock()
	defer m.opMu.Unlock()
	m.ctx.Finalize()
	m.ctx.Destroy()
}

// login logs in to the token in slot once per process. what names the
// configuration the PIN came from, for the error message.
func (m *p11Module) login(slot uint, label, serial, pin string, needLogin bool, what string) error {
	modules.Lock()
	defer modules.Unlock()
	t := m.toks[slot]
	if t == nil {
		t = &p11Token{}
		m.toks[slot] = t
	}
	if !t.hasSess {
		s, err := m.ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			return fault.Wrap(fault.Unavailable, err, "open a session on PKCS#11 token %q: %s", label, ckrName(err))
		}
		t.loginSess, t.hasSess = s, true
	}
	t.refs++
	fail := func(err error) error {
		t.refs--
		m.dropTokenLocked(slot, t)
		return err
	}
	sum := refusedKey(m.path, serial, label, pin)
	if t.loggedIn && pin != "" && sum != t.pinSum {
		// The token has one user PIN and it is logged in with another one:
		// this PIN is wrong, whatever the token would say now.
		t.refs--
		return asConfigProblem(fault.New(fault.Unavailable, "the PIN in %s differs from the PIN that logged in to PKCS#11 token %q through %s; a token has one user PIN, so this one is wrong (fix it and restart)", what, label, t.loginBy))
	}
	if t.loggedIn || !needLogin {
		return nil
	}
	if pin == "" {
		return fail(asConfigProblem(fault.New(fault.Unavailable, "PKCS#11 token %q needs a login but %s has no pin-value or pin-source", label, what)))
	}
	if modules.refused[sum] {
		return fail(asConfigProblem(fault.New(fault.Unavailable, "the PIN in %s was already refused by PKCS#11 token %q; not trying it again (the token would lock); fix the PIN and restart", what, label)))
	}
	err := m.ctx.Login(t.loginSess, pkcs11.CKU_USER, pin)
	switch {
	case err == nil, isCKR(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN):
		t.loggedIn, t.pinSum, t.loginBy = true, sum, what
		return nil
	case isCKR(err, pkcs11.CKR_PIN_INCORRECT, pkcs11.CKR_PIN_INVALID, pkcs11.CKR_PIN_LEN_RANGE):
		modules.refused[sum] = true
		return fail(asConfigProblem(fault.Wrap(fault.Unavailable, err, "the PIN in %s is wrong for PKCS#11 token %q (%s); it will not be retried, fix it and restart", what, label, ckrName(err))))
	case isCKR(err, pkcs11.CKR_PIN_LOCKED, pkcs11.CKR_PIN_EXPIRED):
		return fail(asConfigProblem(fault.Wrap(fault.Unavailable, err, "PKCS#11 token %q is locked or its PIN expired (%s); unlock it with its SO PIN", label, ckrName(err))))
	default:
		return fail(fault.Wrap(fault.Unavailable, err, "log in to PKCS#11 token %q: %s", label, ckrName(err)))
	}
}

func (m *p11Module) logout(slot uint) {
	modules.Lock()
	defer modules.Unlock()
	t := m.toks[slot]
	if t == nil {
		return
	}
	t.refs--
	if t.refs <= 0 {
		m.dropTokenLocked(slot, t)
	}
}

func (m *p11Module) dropTokenLocked(slot uint, t *p11Token) {
	if t.refs > 0 {
		return
	}
	if t.hasSess {
		if t.loggedIn {
			m.ctx.Logout(t.loginSess)
		}
		m.ctx.CloseSession(t.loginSess)
	}
	t.hasSess, t.loggedIn = false, false
}

// ---------------------------------------------------------------------------
// Slots: one logged-in token and its session pool.

type p11Slot struct {
	mod    *p11Module
	id     uint // changes only under mod.opMu held alone (recovery)
	label  string
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

// openSlot finds the one token u names in mod and logs in to it.
func (e *PKCS11Engine) openSlot(ctx context.Context, mod *p11Module, u *pkcs11uri.URI, what string) (*p11Slot, error) {
	mod.opMu.RLock()
	defer mod.opMu.RUnlock()
	id, ti, err := findSlot(mod, u, what)
	if err != nil {
		return nil, err
	}
	pin, err := u.PIN()
	if err != nil {
		return nil, asConfigProblem(fault.Wrap(fault.Unavailable, err, "%s: %s", what, fault.Message(err)))
	}
	label, serial := trimPad(ti.Label), trimPad(ti.SerialNumber)
	needLogin := ti.Flags&pkcs11.CKF_LOGIN_REQUIRED != 0
	if err := mod.login(id, label, serial, pin, needLogin, what); err != nil {
		e.log.Error("pkcs11 login failed", "library", mod.path, "token", label, "slot", id, "config", what, "err", fault.Message(err))
		return nil, err
	}
	mod.retain()
	s := &p11Slot{
		mod: mod, id: id, label: label, serial: serial, log: e.log, uri: u, what: what,
		idle:    make(chan pkcs11.SessionHandle, e.pool),
		permits: make(chan struct{}, e.pool),
	}
	s.drained = sync.NewCond(&s.mu)
	s.queryMechanisms(true)
	mod.state.Lock()
	mod.slots[s] = true
	mod.log = e.log
	mod.state.Unlock()
	e.log.Info("pkcs11 token opened", "library", mod.path, "token", label, "serial", s.serial, "slot", id, "mechanisms", len(s.mechanisms()))
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
// token or module is gone starts the reconnection.
func (s *p11Slot) withSession(ctx context.Context, fn func(pkcs11.SessionHandle) error) error {
	if err := s.unavailable(); err != nil {
		return err
	}
	s.mod.opMu.RLock()
	defer s.mod.opMu.RUnlock()
	if err := s.unavailable(); err != nil { // recovered or lost while we waited
		return err
	}
	h, err := s.session(ctx)
	if err == nil {
		err = fn(h)
		s.put(h, err)
	}
	if isTokenLost(err) {
		s.mod.lost(s, err)
		return fault.Wrap(fault.Unavailable, err, "PKCS#11 token %q is unavailable (%s); keyd is reconnecting to it and resumes by itself", s.label, ckrName(err))
	}
	return err
}

// close waits for operations in flight, closes the pool's sessions and
// gives up this slot's share of the token login.
func (s *p11Slot) close() {
	s.mod.state.Lock()
	delete(s.mod.slots, s)
	s.mod.state.Unlock()
	s.mod.opMu.RLock()
	defer s.mod.opMu.RUnlock()
	s.mu.Lock()
	s.closed = true
	for s.inflight > 0 {
		s.drained.Wait()
	}
	s.mu.Unlock()
	for {
		select {
		case h := <-s.idle:
			s.mod.ctx.CloseSession(h)
			<-s.permits
		default:
			s.mod.logout(s.id)
			return
		}
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
	modules.Lock()
	defer modules.Unlock()
	t := s.mod.toks[s.id]
	if t == nil || !t.loggedIn || refusedKey(s.mod.path, s.serial, s.label, pin) == t.pinSum {
		return nil
	}
	return asConfigProblem(fault.New(fault.Unavailable, "the PIN in %s differs from the PIN that logged in to PKCS#11 token %q through %s; a token has one user PIN, so this one is wrong (fix it and restart)", what, s.label, t.loginBy))
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

// ---------------------------------------------------------------------------
// Object search.

func findObjects(ctx *pkcs11.Ctx, h pkcs11.SessionHandle, tmpl []*pkcs11.Attribute) ([]pkcs11.ObjectHandle, error) {
	if err := ctx.FindObjectsInit(h, tmpl); err != nil {
		return nil, err
	}
	var all []pkcs11.ObjectHandle
	for {
		objs, _, err := ctx.FindObjects(h, 64)
		if err != nil {
			ctx.FindObjectsFinal(h)
			return nil, err
		}
		all = append(all, objs...)
		if len(objs) == 0 {
			break
		}
	}
	return all, ctx.FindObjectsFinal(h)
}

// keyTemplate selects objects by class, label and CKA_ID; empty parts are left out.
func keyTemplate(class uint, label string, id []byte) []*pkcs11.Attribute {
	t := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, class)}
	if label != "" {
		t = append(t, pkcs11.NewAttribute(pkcs11.CKA_LABEL, label))
	}
	if len(id) > 0 {
		t = append(t, pkcs11.NewAttribute(pkcs11.CKA_ID, id))
	}
	return t
}

// findKey finds the one private or secret key matching label/id.
func findKey(ctx *pkcs11.Ctx, h pkcs11.SessionHandle, label string, id []byte, what string) (pkcs11.ObjectHandle, uint, error) {
	for _, class := range []uint{pkcs11.CKO_PRIVATE_KEY, pkcs11.CKO_SECRET_KEY} {
		objs, err := findObjects(ctx, h, keyTemplate(class, label, id))
		if err != nil {
			return 0, 0, err
		}
		switch len(objs) {
		case 0:
			continue
		case 1:
			return objs[0], class, nil
		default:
			return 0, 0, fault.New(fault.InvalidArgs, "key %s: the token holds %d keys that match; give each a distinct label", what, len(objs))
		}
	}
	return 0, 0, fault.New(fault.NotFound, "key %s not found on the PKCS#11 token", what)
}

// labelled returns every object (any class) with the label.
func labelled(ctx *pkcs11.Ctx, h pkcs11.SessionHandle, label string) ([]pkcs11.ObjectHandle, error) {
	return findObjects(ctx, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, label)})
}

func attrUint(b []byte) uint {
	// CK_ULONG in host byte order, as the module wrote it.
	var v uint64
	switch len(b) {
	case 8:
		v = uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
			uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
	case 4:
		v = uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24
	}
	return uint(v)
}

// ---------------------------------------------------------------------------
// Engine operations.

var (
	oidP256 = []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}
	oidP384 = []byte{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22}
)

func newCKAID() ([]byte, error) {
	id := make([]byte, 16)
	_, err := rand.Read(id)
	return id, err
}

// Generate implements Engine.
func (e *PKCS11Engine) Generate(ctx context.Context, id string, spec Spec) (Handle, error) {
	slot, err := e.needBase()
	if err != nil {
		return nil, err
	}
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	if err := slot.mechanisms().supports(slot.label, id, spec, true); err != nil {
		return nil, err
	}
	ckaID, err := newCKAID()
	if err != nil {
		return nil, fault.Wrap(fault.Failed, err, "generate key %q: random CKA_ID: %v", id, err)
	}
	priv := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, id),
		pkcs11.NewAttribute(pkcs11.CKA_ID, ckaID),
	}
	pub := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, id),
		pkcs11.NewAttribute(pkcs11.CKA_ID, ckaID),
	}
	var mech uint
	pair := true
	switch {
	case spec.Type.IsEC():
		mech = pkcs11.CKM_EC_KEY_PAIR_GEN
		oid := oidP256
		if spec.Type == ECP384 {
			oid = oidP384
		}
		pub = append(pub, pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC),
			pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, oid), pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true))
		priv = append(priv, pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC), pkcs11.NewAttribute(pkcs11.CKA_SIGN, true))
	case spec.Type.IsRSA():
		mech = pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN
		pub = append(pub, pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, spec.Type.RSABits()),
			pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}),
			pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true), pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true))
		priv = append(priv, pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, true), pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true))
	case spec.Type == Symmetric:
		pair = false
		ktype, usageAttrs, err := symmetricTemplate(id, spec.Usage)
		if err != nil {
			return nil, err
		}
		mech = pkcs11.CKM_GENERIC_SECRET_KEY_GEN
		if ktype == pkcs11.CKK_AES {
			mech = pkcs11.CKM_AES_KEY_GEN
		}
		priv = append(priv, pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, ktype), pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32))
		priv = append(priv, usageAttrs...)
	default:
		return nil, fault.New(fault.InvalidArgs, "key %q: the pkcs11 engine cannot make key type %q", id, spec.Type)
	}

	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	err = slot.withSession(ctx, func(h pkcs11.SessionHandle) error {
		if err := checkFree(slot.mod.ctx, h, id); err != nil {
			return err
		}
		m := []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}
		if pair {
			_, _, err := slot.mod.ctx.GenerateKeyPair(h, m, pub, priv)
			return err
		}
		_, err := slot.mod.ctx.GenerateKey(h, m, priv)
		return err
	})
	if err != nil {
		if isCKR(err, pkcs11.CKR_MECHANISM_INVALID, pkcs11.CKR_MECHANISM_PARAM_INVALID, pkcs11.CKR_TEMPLATE_INCONSISTENT,
			pkcs11.CKR_ATTRIBUTE_VALUE_INVALID, pkcs11.CKR_KEY_SIZE_RANGE, pkcs11.CKR_DOMAIN_PARAMS_INVALID, pkcs11.CKR_CURVE_NOT_SUPPORTED) {
			return nil, fault.Wrap(fault.NotSupported, err, "key %q: PKCS#11 token %q cannot make key type %s (%s)", id, slot.label, spec, ckrName(err))
		}
		return nil, mapCKR(err, "generate key %q (%s) on PKCS#11 token %q", id, spec, slot.label)
	}
	e.log.Info("pkcs11 key generated", "key", id, "type", spec.String(), "token", slot.label)
	return e.Open(ctx, id)
}

// symmetricTemplate picks the key type and permitted operations for a
// symmetric usage. An empty usage means a sign (HMAC) key.
func symmetricTemplate(id string, usage Usage) (uint, []*pkcs11.Attribute, error) {
	switch usage {
	case UsageSign, "", UsageDerive:
		// CKA_DERIVE marks master keys, so Open can tell them from sign keys.
		return pkcs11.CKK_GENERIC_SECRET, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_DERIVE, usage == UsageDerive),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, true), pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false), pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
			pkcs11.NewAttribute(pkcs11.CKA_WRAP, false), pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
		}, nil
	case UsageEncrypt:
		return pkcs11.CKK_AES, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true), pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, false), pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false),
			pkcs11.NewAttribute(pkcs11.CKA_WRAP, false), pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
		}, nil
	}
	return 0, nil, fault.New(fault.InvalidArgs, "key %q: unknown symmetric key usage %q (want sign, encrypt or derive)", id, usage)
}

func checkFree(ctx *pkcs11.Ctx, h pkcs11.SessionHandle, id string) error {
	objs, err := labelled(ctx, h, id)
	if err != nil {
		return err
	}
	if len(objs) > 0 {
		return fault.New(fault.AlreadyExists, "key %q already exists", id)
	}
	return nil
}

// Import implements Engine: it stores a symmetric key value on the token as
// a sensitive, non-extractable object.
func (e *PKCS11Engine) Import(ctx context.Context, id string, spec Spec, value []byte) (Handle, error) {
	slot, err := e.needBase()
	if err != nil {
		return nil, err
	}
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	if spec.Type != Symmetric {
		return nil, fault.New(fault.InvalidArgs, "key %q: only symmetric keys can be imported, not %q", id, spec.Type)
	}
	ktype, usageAttrs, err := symmetricTemplate(id, spec.Usage)
	if err != nil {
		return nil, err
	}
	if err := slot.mechanisms().supports(slot.label, id, spec, false); err != nil {
		return nil, err
	}
	switch {
	case ktype == pkcs11.CKK_AES && len(value) != 32:
		return nil, fault.New(fault.InvalidArgs, "key %q: an encrypt key must be 32 bytes (AES-256), not %d", id, len(value))
	case ktype == pkcs11.CKK_GENERIC_SECRET && (len(value) < 16 || len(value) > 128):
		return nil, fault.New(fault.InvalidArgs, "key %q: a sign key must be 16 to 128 bytes, not %d", id, len(value))
	}
	ckaID, err := newCKAID()
	if err != nil {
		return nil, fault.Wrap(fault.Failed, err, "import key %q: random CKA_ID: %v", id, err)
	}
	tmpl := append([]*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, ktype),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, id),
		pkcs11.NewAttribute(pkcs11.CKA_ID, ckaID),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, value),
	}, usageAttrs...)

	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	err = slot.withSession(ctx, func(h pkcs11.SessionHandle) error {
		if err := checkFree(slot.mod.ctx, h, id); err != nil {
			return err
		}
		_, err := slot.mod.ctx.CreateObject(h, tmpl)
		return err
	})
	if err != nil {
		return nil, mapCKR(err, "import key %q on PKCS#11 token %q", id, slot.label)
	}
	e.log.Info("pkcs11 key imported", "key", id, "type", spec.String(), "token", slot.label)
	return e.Open(ctx, id)
}

// Open implements Engine: it finds the private or secret key labelled id.
func (e *PKCS11Engine) Open(ctx context.Context, id string) (Handle, error) {
	slot, err := e.needBase()
	if err != nil {
		return nil, err
	}
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	return openKey(ctx, slot, id, id, nil, false)
}

// openKey finds a key by label and/or CKA_ID and reads its public description.
func openKey(ctx context.Context, slot *p11Slot, keyID, label string, ckaID []byte, preloaded bool) (*pkcs11Handle, error) {
	what := fmt.Sprintf("%q", keyID)
	k := &pkcs11Handle{slot: slot, label: label, ckaID: ckaID}
	err := slot.withSession(ctx, func(h pkcs11.SessionHandle) error {
		obj, class, err := findKey(slot.mod.ctx, h, label, ckaID, what)
		if err != nil {
			return err
		}
		k.obj, k.class, k.gen = obj, class, slot.mod.gen.Load()
		info, ktype, err := describeKey(slot.mod.ctx, h, obj, class, keyID)
		if err != nil {
			return err
		}
		k.keyType = ktype
		info.Location = slot.location(label, ckaID)
		info.Preloaded = preloaded
		k.info = info
		return nil
	})
	if err != nil {
		return nil, mapCKR(err, "open key %s on PKCS#11 token %q", what, slot.label)
	}
	return k, nil
}

// describeKey reads the type and public key of a private or secret key object.
func describeKey(ctx *pkcs11.Ctx, h pkcs11.SessionHandle, obj pkcs11.ObjectHandle, class uint, keyID string) (Info, uint, error) {
	info := Info{ID: keyID}
	attrs, err := ctx.GetAttributeValue(h, obj, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_ID, nil),
	})
	if err != nil {
		return info, 0, err
	}
	ktype, ckaID := attrUint(attrs[0].Value), attrs[1].Value
	if class == pkcs11.CKO_SECRET_KEY {
		info.Type = Symmetric
		switch ktype {
		case pkcs11.CKK_GENERIC_SECRET, pkcs11.CKK_SHA256_HMAC:
			// tpm2-pkcs11 makes its HMAC keys (tpm2_ptool addkey
			// --algorithm hmac:sha256) CKK_SHA256_HMAC.
			info.Usage = UsageSign
			if d, err := ctx.GetAttributeValue(h, obj, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_DERIVE, nil)}); err == nil && len(d) == 1 && len(d[0].Value) == 1 && d[0].Value[0] == 1 {
				info.Usage = UsageDerive
			}
		case pkcs11.CKK_AES:
			info.Usage = UsageEncrypt
		default:
			return info, 0, fault.New(fault.InvalidArgs, "key %q is a secret key of PKCS#11 type 0x%x; only generic secret (HMAC) and AES keys are supported", keyID, ktype)
		}
		return info, ktype, nil
	}
	// The public key object shares CKA_ID with the private key.
	pubObj := pkcs11.ObjectHandle(0)
	if len(ckaID) > 0 {
		if objs, err := findObjects(ctx, h, keyTemplate(pkcs11.CKO_PUBLIC_KEY, "", ckaID)); err == nil && len(objs) > 0 {
			pubObj = objs[0]
		}
	}
	switch ktype {
	case pkcs11.CKK_EC:
		a, err := ctx.GetAttributeValue(h, obj, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, nil)})
		if err != nil {
			return info, 0, err
		}
		var curve elliptic.Curve
		switch {
		case bytes.Equal(a[0].Value, oidP256):
			info.Type, curve = ECP256, elliptic.P256()
		case bytes.Equal(a[0].Value, oidP384):
			info.Type, curve = ECP384, elliptic.P384()
		default:
			return info, 0, fault.New(fault.InvalidArgs, "key %q is on an EC curve edgev2 does not support (parameters %x); use P-256 or P-384", keyID, a[0].Value)
		}
		if pubObj == 0 {
			return info, 0, fault.New(fault.InvalidArgs, "key %q has no public key object with the same CKA_ID on the token", keyID)
		}
		p, err := ctx.GetAttributeValue(h, pubObj, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil)})
		if err != nil {
			return info, 0, err
		}
		pub, err := parseECPoint(curve, p[0].Value)
		if err != nil {
			return info, 0, fault.Wrap(fault.InvalidArgs, err, "key %q: the token's CKA_EC_POINT is not a valid point: %v", keyID, err)
		}
		info.Public = pub
	case pkcs11.CKK_RSA:
		tmpl := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_MODULUS, nil), pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, nil)}
		a, err := ctx.GetAttributeValue(h, obj, tmpl)
		if (err != nil || len(a[0].Value) == 0) && pubObj != 0 {
			a, err = ctx.GetAttributeValue(h, pubObj, tmpl)
		}
		if err != nil {
			return info, 0, err
		}
		n := new(big.Int).SetBytes(a[0].Value)
		exp := new(big.Int).SetBytes(a[1].Value)
		if !exp.IsInt64() || exp.Int64() < 3 || exp.Int64() > 1<<31-1 {
			return info, 0, fault.New(fault.InvalidArgs, "key %q has an unsupported RSA public exponent", keyID)
		}
		switch n.BitLen() {
		case 2048:
			info.Type = RSA2048
		case 3072:
			info.Type = RSA3072
		case 4096:
			info.Type = RSA4096
		default:
			return info, 0, fault.New(fault.InvalidArgs, "key %q is RSA-%d; edgev2 supports RSA-2048, 3072 and 4096", keyID, n.BitLen())
		}
		info.Public = &rsa.PublicKey{N: n, E: int(exp.Int64())}
	default:
		return info, 0, fault.New(fault.InvalidArgs, "key %q is a private key of PKCS#11 type 0x%x; only EC and RSA are supported", keyID, ktype)
	}
	return info, ktype, nil
}

// parseECPoint accepts CKA_EC_POINT as the DER OCTET STRING PKCS#11 asks
// for, or as the raw uncompressed point some tokens return.
func parseECPoint(curve elliptic.Curve, b []byte) (*ecdsa.PublicKey, error) {
	size := (curve.Params().BitSize + 7) / 8
	raw := b
	if !(len(b) == 1+2*size && b[0] == 4) {
		var inner []byte
		rest, err := asn1.Unmarshal(b, &inner)
		if err != nil || len(rest) != 0 {
			return nil, errors.New("neither a DER OCTET STRING nor an uncompressed point")
		}
		raw = inner
	}
	return ecdsa.ParseUncompressedPublicKey(curve, raw)
}

// Delete implements Engine: it destroys every object labelled id.
func (e *PKCS11Engine) Delete(ctx context.Context, id string) error {
	slot, err := e.needBase()
	if err != nil {
		return err
	}
	if err := ValidateID(id); err != nil {
		return err
	}
	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	err = slot.withSession(ctx, func(h pkcs11.SessionHandle) error {
		objs, err := labelled(slot.mod.ctx, h, id)
		if err != nil {
			return err
		}
		if len(objs) == 0 {
			return fault.New(fault.NotFound, "key %q not found", id)
		}
		for _, o := range objs {
			if err := slot.mod.ctx.DestroyObject(h, o); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return mapCKR(err, "delete key %q on PKCS#11 token %q", id, slot.label)
	}
	e.log.Info("pkcs11 key deleted", "key", id, "token", slot.label)
	return nil
}

// Move implements Engine. It relabels the old target to a trash label,
// relabels the source to the target and then destroys the trash, so a crash
// at any point leaves either the old keys or the new, and recoverMoves
// finishes the job on the next start.
func (e *PKCS11Engine) Move(ctx context.Context, from, to string) error {
	slot, err := e.needBase()
	if err != nil {
		return err
	}
	if err := ValidateID(from); err != nil {
		return err
	}
	if err := ValidateID(to); err != nil {
		return err
	}
	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	c := slot.mod.ctx
	trash := trashPrefix + to
	err = slot.withSession(ctx, func(h pkcs11.SessionHandle) error {
		src, err := labelled(c, h, from)
		if err != nil {
			return err
		}
		if len(src) == 0 {
			return fault.New(fault.NotFound, "key %q not found", from)
		}
		if from == to {
			return nil
		}
		dst, err := labelled(c, h, to)
		if err != nil {
			return err
		}
		if err := relabel(c, h, dst, trash); err != nil {
			return err
		}
		// Public objects first: the private or secret object carries the
		// label Open and List go by, so relabelling it is the commit point.
		sortPrivateLast(c, h, src)
		if err := relabel(c, h, src, to); err != nil {
			return err
		}
		for _, o := range dst {
			if err := c.DestroyObject(h, o); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return mapCKR(err, "move key %q to %q on PKCS#11 token %q", from, to, slot.label)
	}
	e.log.Info("pkcs11 key moved", "from", from, "to", to, "token", slot.label)
	return nil
}

func relabel(c *pkcs11.Ctx, h pkcs11.SessionHandle, objs []pkcs11.ObjectHandle, label string) error {
	for _, o := range objs {
		if err := c.SetAttributeValue(h, o, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, label)}); err != nil {
			return err
		}
	}
	return nil
}

func sortPrivateLast(c *pkcs11.Ctx, h pkcs11.SessionHandle, objs []pkcs11.ObjectHandle) {
	rank := map[pkcs11.ObjectHandle]int{}
	for _, o := range objs {
		a, err := c.GetAttributeValue(h, o, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, nil)})
		if err == nil {
			if cl := attrUint(a[0].Value); cl == pkcs11.CKO_PRIVATE_KEY || cl == pkcs11.CKO_SECRET_KEY {
				rank[o] = 1
			}
		}
	}
	sort.SliceStable(objs, func(i, j int) bool { return rank[objs[i]] < rank[objs[j]] })
}

// recoverMoves finishes Moves a crash interrupted. For each target with
// trash objects: if a key is labelled with the target again, the source was
// relabelled (the commit point) and the trash is destroyed; otherwise the
// trash goes back to its old label and the Move never happened.
func (e *PKCS11Engine) recoverMoves(ctx context.Context) error {
	slot := e.base
	c := slot.mod.ctx
	err := slot.withSession(ctx, func(h pkcs11.SessionHandle) error {
		trash := map[string][]pkcs11.ObjectHandle{}
		var targets []string
		for _, class := range []uint{pkcs11.CKO_PRIVATE_KEY, pkcs11.CKO_SECRET_KEY, pkcs11.CKO_PUBLIC_KEY} {
			objs, err := findObjects(c, h, keyTemplate(class, "", nil))
			if err != nil {
				return err
			}
			for _, o := range objs {
				a, err := c.GetAttributeValue(h, o, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil)})
				if err != nil || !strings.HasPrefix(string(a[0].Value), trashPrefix) {
					continue
				}
				to := strings.TrimPrefix(string(a[0].Value), trashPrefix)
				if trash[to] == nil {
					targets = append(targets, to)
				}
				trash[to] = append(trash[to], o)
			}
		}
		for _, to := range targets {
			if _, _, err := findKey(c, h, to, nil, to); err == nil {
				e.log.Warn("pkcs11 finishing an interrupted key move: destroying the replaced key", "key", to)
				for _, o := range trash[to] {
					if err := c.DestroyObject(h, o); err != nil {
						return err
					}
				}
			} else {
				e.log.Warn("pkcs11 undoing an interrupted key move: restoring the key", "key", to)
				if err := relabel(c, h, trash[to], to); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return mapCKR(err, "recover interrupted key moves on PKCS#11 token %q", slot.label)
	}
	return nil
}

// List implements Engine: the labels of private and secret keys, sorted.
func (e *PKCS11Engine) List(ctx context.Context) ([]string, error) {
	slot, err := e.needBase()
	if err != nil {
		return nil, err
	}
	c := slot.mod.ctx
	seen := map[string]bool{}
	err = slot.withSession(ctx, func(h pkcs11.SessionHandle) error {
		for _, class := range []uint{pkcs11.CKO_PRIVATE_KEY, pkcs11.CKO_SECRET_KEY} {
			objs, err := findObjects(c, h, keyTemplate(class, "", nil))
			if err != nil {
				return err
			}
			for _, o := range objs {
				a, err := c.GetAttributeValue(h, o, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil)})
				if err != nil {
					return err
				}
				if label := string(a[0].Value); ValidateID(label) == nil {
					seen[label] = true
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, mapCKR(err, "list keys on PKCS#11 token %q", slot.label)
	}
	ids := make([]string, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids, nil
}

// OpenURI opens a key named by a PKCS#11 URI, as [preloaded_keys] entries
// do. The key is on the base token when the URI names no token or names the
// base token; otherwise the engine logs in to the token the URI names with
// the URI's own PIN (once per token; a refused PIN is never tried again).
func (e *PKCS11Engine) OpenURI(ctx context.Context, uri string) (Handle, error) {
	u, err := pkcs11uri.Parse(uri)
	if err != nil {
		return nil, err
	}
	shown := u.String()
	if u.Object == "" && len(u.ID) == 0 {
		return nil, fault.New(fault.InvalidArgs, "PKCS#11 URI %s names no key: add object= or id=", shown)
	}
	if u.Type != "" && u.Type != "private" && u.Type != "secret-key" {
		return nil, fault.New(fault.InvalidArgs, "PKCS#11 URI %s: type=%s is not a key edgev2 can use (want private or secret-key)", shown, u.Type)
	}
	slot, err := e.slotFor(ctx, u)
	if err != nil {
		return nil, err
	}
	if err := slot.samePIN(u, "preloaded key URI "+shown); err != nil {
		return nil, err
	}
	keyID := u.Object
	if keyID == "" {
		keyID = "id=" + hex.EncodeToString(u.ID)
	}
	k, err := openKey(ctx, slot, keyID, u.Object, u.ID, true)
	if err != nil {
		return nil, err
	}
	if u.Type == "private" && k.class != pkcs11.CKO_PRIVATE_KEY || u.Type == "secret-key" && k.class != pkcs11.CKO_SECRET_KEY {
		return nil, fault.New(fault.NotFound, "PKCS#11 URI %s: the key found is not of type %s", shown, u.Type)
	}
	return k, nil
}

func (e *PKCS11Engine) slotFor(ctx context.Context, u *pkcs11uri.URI) (*p11Slot, error) {
	mod := e.mod
	if u.ModulePath != "" && u.ModulePath != e.mod.path {
		m, err := acquireModule(u.ModulePath)
		if err != nil {
			return nil, err
		}
		mod = m
		defer mod.release() // openSlot retains it for the slot it returns
	}
	if mod == e.mod && e.base != nil {
		if !namesToken(u) {
			return e.base, nil
		}
		mod.opMu.RLock()
		si, serr := mod.ctx.GetSlotInfo(e.base.id)
		ti, terr := mod.ctx.GetTokenInfo(e.base.id)
		mod.opMu.RUnlock()
		if serr == nil && terr == nil && (!u.HasSlotID || u.SlotID == e.base.id) &&
			libraryMatches(mod.info, u) && slotMatches(u, si, ti) {
			return e.base, nil
		}
	}
	mod.opMu.RLock()
	id, _, err := findSlot(mod, u, "preloaded key")
	mod.opMu.RUnlock()
	if err != nil {
		return nil, err
	}
	key := fmt.Sprintf("%s#%d", mod.path, id)
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, fault.New(fault.Unavailable, "the pkcs11 engine is closed")
	}
	s := e.others[key]
	e.mu.Unlock()
	if s != nil {
		return s, nil
	}
	s, err = e.openSlot(ctx, mod, u, "preloaded key URI "+u.String())
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		s.close()
		mod.release()
		return nil, fault.New(fault.Unavailable, "the pkcs11 engine is closed")
	}
	if prev := e.others[key]; prev != nil {
		// Lost a race with another OpenURI for the same token.
		s.close()
		mod.release()
		return prev, nil
	}
	e.others[key] = s
	return s, nil
}

// ---------------------------------------------------------------------------
// Handles.

type pkcs11Handle struct {
	slot    *p11Slot
	info    Info
	keyType uint // CKK_*
	class   uint // CKO_PRIVATE_KEY or CKO_SECRET_KEY
	label   string
	ckaID   []byte

	mu  sync.Mutex
	obj pkcs11.ObjectHandle
	gen uint64 // the module generation obj was found in
}

func (k *pkcs11Handle) Info() Info { return k.info }

// use runs fn with a session and the key's object handle. A handle found
// before the module was re-initialised is never used (it may name another
// object now): the key is found again. If the token says the handle is
// stale (the object was rewritten), it is found again once.
func (k *pkcs11Handle) use(ctx context.Context, fn func(c *pkcs11.Ctx, h pkcs11.SessionHandle, obj pkcs11.ObjectHandle) error) error {
	c := k.slot.mod.ctx
	err := k.slot.withSession(ctx, func(h pkcs11.SessionHandle) error {
		gen := k.slot.mod.gen.Load() // stable: recovery waits for this session
		k.mu.Lock()
		obj, current := k.obj, k.gen == gen
		k.mu.Unlock()
		if !current {
			var err error
			if obj, err = k.find(c, h, gen); err != nil {
				return err
			}
		}
		return fn(c, h, obj)
	})
	if !isCKR(err, pkcs11.CKR_OBJECT_HANDLE_INVALID, pkcs11.CKR_KEY_HANDLE_INVALID) {
		return err
	}
	return k.slot.withSession(ctx, func(h pkcs11.SessionHandle) error {
		obj, err := k.find(c, h, k.slot.mod.gen.Load())
		if err != nil {
			return err
		}
		return fn(c, h, obj)
	})
}

// find looks the key up again by label and CKA_ID and caches the handle.
func (k *pkcs11Handle) find(c *pkcs11.Ctx, h pkcs11.SessionHandle, gen uint64) (pkcs11.ObjectHandle, error) {
	obj, class, err := findKey(c, h, k.label, k.ckaID, fmt.Sprintf("%q", k.info.ID))
	if err != nil {
		return 0, err
	}
	if class != k.class {
		return 0, fault.New(fault.NotFound, "key %q was replaced by a different kind of key; open it again", k.info.ID)
	}
	k.mu.Lock()
	k.obj, k.gen = obj, gen
	k.mu.Unlock()
	return obj, nil
}

func (k *pkcs11Handle) wrong(op string) error {
	spec := Spec{Type: k.info.Type, Usage: k.info.Usage}
	return fault.New(fault.InvalidArgs, "key %q is %s; it cannot do %s", k.info.ID, spec, op)
}

// HMACSHA256 implements Handle.
func (k *pkcs11Handle) HMACSHA256(ctx context.Context, data []byte) ([]byte, error) {
	if k.keyType != pkcs11.CKK_GENERIC_SECRET && k.keyType != pkcs11.CKK_SHA256_HMAC {
		return nil, k.wrong("HMAC-SHA256")
	}
	var sig []byte
	err := k.use(ctx, func(c *pkcs11.Ctx, h pkcs11.SessionHandle, obj pkcs11.ObjectHandle) error {
		if err := c.SignInit(h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_SHA256_HMAC, nil)}, obj); err != nil {
			return err
		}
		var err error
		sig, err = c.Sign(h, data)
		return err
	})
	if err != nil {
		return nil, mapCKR(err, "HMAC-SHA256 with key %q", k.info.ID)
	}
	return sig, nil
}

var digestInfoPrefix = map[crypto.Hash][]byte{
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
	crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
}

var pssHash = map[crypto.Hash][2]uint{
	crypto.SHA256: {pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256},
	crypto.SHA384: {pkcs11.CKM_SHA384, pkcs11.CKG_MGF1_SHA384},
	crypto.SHA512: {pkcs11.CKM_SHA512, pkcs11.CKG_MGF1_SHA512},
}

// SignDigest implements Handle.
func (k *pkcs11Handle) SignDigest(ctx context.Context, digest []byte, hash crypto.Hash, pss bool) ([]byte, error) {
	if hash != 0 && hash.Available() && len(digest) != hash.Size() {
		return nil, fault.New(fault.InvalidArgs, "key %q: a %s digest is %d bytes, not %d", k.info.ID, hash, hash.Size(), len(digest))
	}
	var mech *pkcs11.Mechanism
	input := digest
	switch {
	case k.keyType == pkcs11.CKK_EC:
		if pss {
			return nil, k.wrong("RSA-PSS")
		}
		if len(digest) == 0 || len(digest) > 64 {
			return nil, fault.New(fault.InvalidArgs, "key %q: an ECDSA digest must be 1 to 64 bytes, not %d", k.info.ID, len(digest))
		}
		mech = pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)
	case k.keyType == pkcs11.CKK_RSA && pss:
		p, ok := pssHash[hash]
		if !ok {
			return nil, fault.New(fault.InvalidArgs, "key %q: RSA-PSS supports SHA-256, SHA-384 and SHA-512, not %s", k.info.ID, hash)
		}
		mech = pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_PSS, pkcs11.NewPSSParams(p[0], p[1], uint(hash.Size())))
	case k.keyType == pkcs11.CKK_RSA:
		prefix, ok := digestInfoPrefix[hash]
		if !ok {
			return nil, fault.New(fault.InvalidArgs, "key %q: RSA PKCS#1 v1.5 supports SHA-256, SHA-384 and SHA-512, not %s", k.info.ID, hash)
		}
		input = append(append(make([]byte, 0, len(prefix)+len(digest)), prefix...), digest...)
		mech = pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil)
	default:
		return nil, k.wrong("digest signing")
	}
	var sig []byte
	err := k.use(ctx, func(c *pkcs11.Ctx, h pkcs11.SessionHandle, obj pkcs11.ObjectHandle) error {
		if err := c.SignInit(h, []*pkcs11.Mechanism{mech}, obj); err != nil {
			return err
		}
		var err error
		sig, err = c.Sign(h, input)
		return err
	})
	if err != nil {
		return nil, mapCKR(err, "sign with key %q", k.info.ID)
	}
	if k.keyType == pkcs11.CKK_EC {
		return ecdsaDER(sig, k.info.ID)
	}
	return sig, nil
}

// ecdsaDER turns PKCS#11's raw r||s into the ASN.1 DER form Go and X.509 use.
func ecdsaDER(raw []byte, id string) ([]byte, error) {
	if len(raw) == 0 || len(raw)%2 != 0 {
		return nil, fault.New(fault.Failed, "key %q: the token returned a %d-byte ECDSA signature, not r||s", id, len(raw))
	}
	half := len(raw) / 2
	sig := struct{ R, S *big.Int }{new(big.Int).SetBytes(raw[:half]), new(big.Int).SetBytes(raw[half:])}
	der, err := asn1.Marshal(sig)
	if err != nil {
		return nil, fault.Wrap(fault.Failed, err, "key %q: encode ECDSA signature: %v", id, err)
	}
	return der, nil
}

// DecryptOAEP implements Handle. Tokens that refuse CKM_RSA_PKCS_OAEP with
// SHA-256 (SoftHSM 2.6 only accepts SHA-1) get a raw CKM_RSA_X_509
// decryption and the OAEP decoding is done here, in constant time.
func (k *pkcs11Handle) DecryptOAEP(ctx context.Context, ciphertext []byte) ([]byte, error) {
	if k.keyType != pkcs11.CKK_RSA {
		return nil, k.wrong("RSA-OAEP decryption")
	}
	pub, _ := k.info.Public.(*rsa.PublicKey)
	if pub == nil || len(ciphertext) != pub.Size() {
		return nil, fault.New(fault.InvalidArgs, "key %q: an RSA-OAEP ciphertext for this key is %d bytes, not %d", k.info.ID, pubSize(pub), len(ciphertext))
	}
	if !k.slot.rawOAEP.Load() {
		params := pkcs11.NewOAEPParams(pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256, pkcs11.CKZ_DATA_SPECIFIED, nil)
		var pt []byte
		initRefused := false
		err := k.use(ctx, func(c *pkcs11.Ctx, h pkcs11.SessionHandle, obj pkcs11.ObjectHandle) error {
			if err := c.DecryptInit(h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_OAEP, params)}, obj); err != nil {
				initRefused = isCKR(err, pkcs11.CKR_ARGUMENTS_BAD, pkcs11.CKR_MECHANISM_PARAM_INVALID, pkcs11.CKR_MECHANISM_INVALID)
				return err
			}
			var err error
			pt, err = c.Decrypt(h, ciphertext)
			return err
		})
		switch {
		case err == nil:
			return pt, nil
		case initRefused:
			k.slot.rawOAEP.Store(true)
			k.slot.log.Info("pkcs11 token refuses CKM_RSA_PKCS_OAEP with SHA-256; decoding OAEP in the daemon over CKM_RSA_X_509", "token", k.slot.label, "reason", ckrName(err))
		case isCKR(err, pkcs11.CKR_ENCRYPTED_DATA_INVALID, pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE):
			return nil, fault.Wrap(fault.InvalidArgs, err, "key %q: RSA-OAEP decryption failed (%s)", k.info.ID, ckrName(err))
		default:
			return nil, mapCKR(err, "RSA-OAEP decrypt with key %q", k.info.ID)
		}
	}
	var em []byte
	err := k.use(ctx, func(c *pkcs11.Ctx, h pkcs11.SessionHandle, obj pkcs11.ObjectHandle) error {
		if err := c.DecryptInit(h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_X_509, nil)}, obj); err != nil {
			return err
		}
		var err error
		em, err = c.Decrypt(h, ciphertext)
		return err
	})
	if err != nil {
		if isCKR(err, pkcs11.CKR_ENCRYPTED_DATA_INVALID, pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE) {
			return nil, fault.Wrap(fault.InvalidArgs, err, "key %q: RSA-OAEP decryption failed (%s)", k.info.ID, ckrName(err))
		}
		return nil, mapCKR(err, "RSA-OAEP decrypt (raw RSA) with key %q", k.info.ID)
	}
	pt, ok := oaepDecodeSHA256(em, pub.Size())
	if !ok {
		return nil, fault.New(fault.InvalidArgs, "key %q: RSA-OAEP decryption failed", k.info.ID)
	}
	return pt, nil
}

func pubSize(pub *rsa.PublicKey) int {
	if pub == nil {
		return 0
	}
	return pub.Size()
}

// oaepDecodeSHA256 is EME-OAEP decoding (RFC 8017 7.1.2) with SHA-256,
// MGF1-SHA-256 and an empty label. It runs in time independent of where the
// encoding is wrong, so it is no padding oracle.
func oaepDecodeSHA256(raw []byte, k int) ([]byte, bool) {
	const hLen = sha256.Size
	if len(raw) > k || k < 2*hLen+2 {
		return nil, false
	}
	em := make([]byte, k)
	copy(em[k-len(raw):], raw)
	lHash := sha256.Sum256(nil)

	firstByteIsZero := subtle.ConstantTimeByteEq(em[0], 0)
	seed, db := em[1:hLen+1], em[hLen+1:]
	mgf1XORSHA256(seed, db)
	mgf1XORSHA256(db, seed)
	lHashGood := subtle.ConstantTimeCompare(lHash[:], db[:hLen])

	// db = lHash' || PS (zeros) || 0x01 || M
	rest := db[hLen:]
	lookingForIndex, index, invalid := 1, 0, 0
	for i := range rest {
		equals0 := subtle.ConstantTimeByteEq(rest[i], 0)
		equals1 := subtle.ConstantTimeByteEq(rest[i], 1)
		index = subtle.ConstantTimeSelect(lookingForIndex&equals1, i, index)
		lookingForIndex = subtle.ConstantTimeSelect(equals1, 0, lookingForIndex)
		invalid = subtle.ConstantTimeSelect(lookingForIndex&^equals0, 1, invalid)
	}
	if firstByteIsZero&lHashGood&^invalid&^lookingForIndex != 1 {
		return nil, false
	}
	return append([]byte{}, rest[index+1:]...), true
}

// mgf1XORSHA256 XORs out with MGF1-SHA-256(seed).
func mgf1XORSHA256(out, seed []byte) {
	var counter [4]byte
	done := 0
	for done < len(out) {
		h := sha256.New()
		h.Write(seed)
		h.Write(counter[:])
		mask := h.Sum(nil)
		for i := 0; i < len(mask) && done < len(out); i++ {
			out[done] ^= mask[i]
			done++
		}
		for i := 3; i >= 0; i-- {
			counter[i]++
			if counter[i] != 0 {
				break
			}
		}
	}
}

const gcmTagSize = 16

// SealGCM implements Handle.
func (k *pkcs11Handle) SealGCM(ctx context.Context, iv, aad, plaintext []byte) ([]byte, error) {
	if err := k.checkGCM(iv); err != nil {
		return nil, err
	}
	var ct []byte
	err := k.use(ctx, func(c *pkcs11.Ctx, h pkcs11.SessionHandle, obj pkcs11.ObjectHandle) error {
		params := pkcs11.NewGCMParams(iv, aad, gcmTagSize*8)
		defer params.Free()
		if err := c.EncryptInit(h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, obj); err != nil {
			return err
		}
		var err error
		ct, err = c.Encrypt(h, plaintext)
		return err
	})
	if err != nil {
		return nil, mapCKR(err, "AES-GCM encrypt with key %q", k.info.ID)
	}
	return ct, nil
}

// OpenGCM implements Handle.
func (k *pkcs11Handle) OpenGCM(ctx context.Context, iv, aad, ciphertext []byte) ([]byte, error) {
	if err := k.checkGCM(iv); err != nil {
		return nil, err
	}
	if len(ciphertext) < gcmTagSize {
		return nil, fault.New(fault.InvalidArgs, "key %q: AES-GCM ciphertext is %d bytes, shorter than its 16-byte tag", k.info.ID, len(ciphertext))
	}
	var pt []byte
	err := k.use(ctx, func(c *pkcs11.Ctx, h pkcs11.SessionHandle, obj pkcs11.ObjectHandle) error {
		params := pkcs11.NewGCMParams(iv, aad, gcmTagSize*8)
		defer params.Free()
		if err := c.DecryptInit(h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, obj); err != nil {
			return err
		}
		var err error
		pt, err = c.Decrypt(h, ciphertext)
		return err
	})
	if err != nil {
		if isCKR(err, pkcs11.CKR_ENCRYPTED_DATA_INVALID, pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE, pkcs11.CKR_GENERAL_ERROR, pkcs11.CKR_FUNCTION_FAILED) {
			// SoftHSM reports a tag mismatch as CKR_GENERAL_ERROR.
			return nil, fault.Wrap(fault.InvalidArgs, err, "key %q: AES-GCM authentication failed (%s)", k.info.ID, ckrName(err))
		}
		return nil, mapCKR(err, "AES-GCM decrypt with key %q", k.info.ID)
	}
	if pt == nil {
		pt = []byte{}
	}
	return pt, nil
}

func (k *pkcs11Handle) checkGCM(iv []byte) error {
	if k.keyType != pkcs11.CKK_AES {
		return k.wrong("AES-GCM")
	}
	if len(iv) != 12 {
		return fault.New(fault.InvalidArgs, "key %q: the AES-GCM iv must be 12 bytes, not %d", k.info.ID, len(iv))
	}
	return nil
}

// ---------------------------------------------------------------------------
// Errors.

func isCKR(err error, codes ...uint) bool {
	var pe pkcs11.Error
	if !errors.As(err, &pe) {
		return false
	}
	for _, c := range codes {
		if uint(pe) == c {
			return true
		}
	}
	return false
}

// ckrName returns the CKR_* name of a PKCS#11 error ("CKR_PIN_INCORRECT").
func ckrName(err error) string {
	var pe pkcs11.Error
	if !errors.As(err, &pe) {
		return err.Error()
	}
	s := pe.Error() // "pkcs11: 0xA0: CKR_PIN_INCORRECT"
	if i := strings.LastIndex(s, ": "); i >= 0 && strings.HasPrefix(s[i+2:], "CKR_") {
		return s[i+2:]
	}
	return fmt.Sprintf("CKR 0x%X", uint(pe))
}

// mapCKR turns a PKCS#11 error into a fault whose message says what was
// being done (format, args) and the CKR name. Errors that already carry a
// fault kind keep it.
func mapCKR(err error, format string, args ...any) error {
	var fe *fault.Error
	if errors.As(err, &fe) {
		return err
	}
	what := fmt.Sprintf(format, args...)
	var pe pkcs11.Error
	if !errors.As(err, &pe) {
		return fault.Wrap(fault.Failed, err, "%s: %v", what, err)
	}
	return fault.Wrap(ckrKind(uint(pe)), err, "%s: %s", what, ckrName(err))
}

func ckrKind(code uint) fault.Kind {
	switch code {
	case pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_TOKEN_NOT_PRESENT, pkcs11.CKR_TOKEN_NOT_RECOGNIZED,
		pkcs11.CKR_DEVICE_ERROR, pkcs11.CKR_DEVICE_MEMORY, pkcs11.CKR_HOST_MEMORY,
		pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED, pkcs11.CKR_SESSION_COUNT,
		pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED, pkcs11.CKR_USER_NOT_LOGGED_IN, pkcs11.CKR_PIN_LOCKED,
		pkcs11.CKR_PIN_EXPIRED, pkcs11.CKR_TOKEN_WRITE_PROTECTED, pkcs11.CKR_FUNCTION_CANCELED:
		return fault.Unavailable
	case pkcs11.CKR_MECHANISM_INVALID, pkcs11.CKR_MECHANISM_PARAM_INVALID, pkcs11.CKR_CURVE_NOT_SUPPORTED,
		pkcs11.CKR_FUNCTION_NOT_SUPPORTED:
		// keyd builds every mechanism and parameter itself: a refusal is
		// the token's limitation, never the caller's mistake.
		return fault.NotSupported
	case pkcs11.CKR_KEY_TYPE_INCONSISTENT,
		pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED, pkcs11.CKR_KEY_SIZE_RANGE, pkcs11.CKR_DATA_LEN_RANGE,
		pkcs11.CKR_DATA_INVALID, pkcs11.CKR_ENCRYPTED_DATA_INVALID, pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE,
		pkcs11.CKR_ARGUMENTS_BAD, pkcs11.CKR_TEMPLATE_INCONSISTENT, pkcs11.CKR_TEMPLATE_INCOMPLETE,
		pkcs11.CKR_ATTRIBUTE_VALUE_INVALID, pkcs11.CKR_DOMAIN_PARAMS_INVALID,
		pkcs11.CKR_KEY_NOT_NEEDED, pkcs11.CKR_KEY_INDIGESTIBLE:
		return fault.InvalidArgs
	case pkcs11.CKR_OBJECT_HANDLE_INVALID, pkcs11.CKR_KEY_HANDLE_INVALID:
		return fault.NotFound
	}
	return fault.Failed
}
