// Modules and tokens shared by every engine in the process. A PKCS#11 module
// is initialised once per process and a login belongs to the application,
// not to a session, so both are reference-counted here.

package keys

import (
	"crypto/sha256"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/miekg/pkcs11"

	"github.com/edgev2/edgev2/fault"
)

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
