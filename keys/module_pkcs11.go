// Modules and tokens shared by every engine in the process. A PKCS#11 module
// is initialised once per process and a login belongs to the application,
// not to a session, so both are reference-counted here.

package keys

import (
	"crypto/sha256"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/edgev2/edgev2/fault"
)

type p11Module struct {
	path string
	ctx  *pkcs11.Ctx
	info pkcs11.Info
	refs int // guarded by modules.mu

	// tokMu guards toks. It is held across C_OpenSession and C_Login, but
	// only inside calls under the watchdog, and never with modules held:
	// a token that stops answering holds up no other module.
	tokMu sync.Mutex
	toks  map[uint]*p11Token

	// gate is held shared by every PKCS#11 call on a session or slot and
	// alone by recovery, which finalises and re-initialises the module,
	// and by release (watchdog_pkcs11.go).
	gate p11Gate
	// hung is set by the watchdog when a call has been in the module for
	// p11CallLimit, and cleared by recovery: while set, calls fail at once.
	hung atomic.Bool
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
	// A library's state is shared by every instance of it in the process:
	// a path being initialised is not finalised, and one being finalised
	// is not initialised until that is done.
	loading    map[string]int
	finalising map[string]chan struct{}
}{m: map[string]*p11Module{}, refused: map[[32]byte]bool{}, loading: map[string]int{}, finalising: map[string]chan struct{}{}}

// refusedKey identifies a PIN for a token without keeping the PIN.
func refusedKey(lib, serial, label, pin string) [32]byte {
	return sha256.Sum256([]byte(lib + "\x00" + serial + "\x00" + label + "\x00" + pin))
}

// acquireModule loads and initialises the module at path once per process.
// C_Initialize runs without modules held and under the watchdog: a module
// that does not answer (p11-kit's client connects to its server there)
// holds up no other.
func acquireModule(path string) (*p11Module, error) {
	timer := time.NewTimer(p11CallLimit)
	defer timer.Stop()
	for {
		modules.Lock()
		if m := modules.m[path]; m != nil {
			m.refs++
			modules.Unlock()
			return m, nil
		}
		fin := modules.finalising[path]
		if fin == nil {
			modules.loading[path]++
			modules.Unlock()
			break
		}
		modules.Unlock()
		select {
		case <-fin:
		case <-timer.C:
			return nil, notAnswering(fmt.Sprintf("module %q", path), "C_Finalize of its previous use")
		}
	}
	loaded := false
	defer func() {
		if !loaded {
			modules.Lock()
			modules.loading[path]--
			modules.Unlock()
		}
	}()
	ctx := pkcs11.New(path)
	if ctx == nil {
		return nil, fault.New(fault.Unavailable, "cannot load PKCS#11 module %q (pkcs11_lib_path): missing file or not a PKCS#11 library", path)
	}
	type result struct {
		info pkcs11.Info
		err  error
	}
	done := make(chan result) // unbuffered: a send is taken only by a caller still waiting
	gaveUp := make(chan struct{})
	go func() {
		var r result
		if err := ctx.Initialize(); err != nil && !isCKR(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
			ctx.Destroy()
			r.err = fault.Wrap(fault.Unavailable, err, "initialise PKCS#11 module %q: %s", path, ckrName(err))
		} else if r.info, err = ctx.GetInfo(); err != nil {
			ctx.Finalize()
			ctx.Destroy()
			r.err = fault.Wrap(fault.Unavailable, err, "PKCS#11 module %q: C_GetInfo: %s", path, ckrName(err))
		}
		select {
		case done <- r:
		case <-gaveUp:
			// The module answered after all, with nobody to use it:
			// finalise it unless its path is in use again.
			if r.err == nil {
				late := &p11Module{path: path, ctx: ctx}
				late.gate.acquire(true, nil, nil)
				late.finalize()
			}
		}
	}()
	var r result
	select {
	case r = <-done:
	case <-timer.C:
		close(gaveUp)
		return nil, stuck(fmt.Sprintf("module %q", path), "C_Initialize")
	}
	if r.err != nil {
		return nil, r.err
	}
	modules.Lock()
	defer modules.Unlock()
	loaded = true
	modules.loading[path]--
	if m := modules.m[path]; m != nil {
		// Another caller loaded it meanwhile. Both instances share the
		// library's state; finalising this one would finalise theirs.
		m.refs++
		ctx.Destroy()
		return m, nil
	}
	m := &p11Module{path: path, ctx: ctx, info: r.info, refs: 1, toks: map[uint]*p11Token{},
		slots: map[*p11Slot]bool{}, stop: make(chan struct{}), log: slog.Default()}
	modules.m[path] = m
	m.wg.Add(1)
	go m.watchdog(p11CallLimit)
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
	m.wg.Wait() // the recovery loop, if one runs; it stops at once
	timer := time.NewTimer(p11CallLimit)
	defer timer.Stop()
	if _, ok := m.gate.acquire(true, timer.C, nil); !ok {
		// A call is stuck in the module: C_Finalize under it is not
		// allowed, and would not return either. Finalise once the
		// stuck calls return (the goroutine's owners are those calls).
		m.log.Warn("pkcs11 module not answering; closed without finalising it until its stuck calls return", "library", m.path)
		go func() {
			m.gate.acquire(true, nil, nil)
			m.finalize()
		}()
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.finalize()
	}()
	select {
	case <-done:
	case <-timer.C:
		m.log.Warn("pkcs11 module not answering; C_Finalize gave no answer, left to finish", "library", m.path)
	}
}

// finalize ends a released module, holding its gate alone, and releases
// the gate. It leaves the library's state alone if the path is in use
// again (loaded, or being loaded): the new instance shares that state.
func (m *p11Module) finalize() {
	defer m.gate.releaseExcl()
	modules.Lock()
	if modules.m[m.path] != nil || modules.loading[m.path] > 0 || modules.finalising[m.path] != nil {
		modules.Unlock()
		return
	}
	done := make(chan struct{})
	modules.finalising[m.path] = done
	modules.Unlock()
	m.ctx.Finalize()
	m.ctx.Destroy()
	modules.Lock()
	delete(modules.finalising, m.path)
	modules.Unlock()
	close(done)
}

// login logs in to the token in slot once per process. what names the
// configuration the PIN came from, for the error message. Called under
// the watchdog (m.call), as is logout.
func (m *p11Module) login(slot uint, label, serial, pin string, needLogin bool, what string) error {
	m.tokMu.Lock()
	defer m.tokMu.Unlock()
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
	if isRefused(sum) {
		return fail(asConfigProblem(fault.New(fault.Unavailable, "the PIN in %s was already refused by PKCS#11 token %q; not trying it again (the token would lock); fix the PIN and restart", what, label)))
	}
	err := m.ctx.Login(t.loginSess, pkcs11.CKU_USER, pin)
	switch {
	case err == nil, isCKR(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN):
		t.loggedIn, t.pinSum, t.loginBy = true, sum, what
		return nil
	case isCKR(err, pkcs11.CKR_PIN_INCORRECT, pkcs11.CKR_PIN_INVALID, pkcs11.CKR_PIN_LEN_RANGE):
		modules.Lock()
		modules.refused[sum] = true
		modules.Unlock()
		return fail(asConfigProblem(fault.Wrap(fault.Unavailable, err, "the PIN in %s is wrong for PKCS#11 token %q (%s); it will not be retried, fix it and restart", what, label, ckrName(err))))
	case isCKR(err, pkcs11.CKR_PIN_LOCKED, pkcs11.CKR_PIN_EXPIRED):
		return fail(asConfigProblem(fault.Wrap(fault.Unavailable, err, "PKCS#11 token %q is locked or its PIN expired (%s); unlock it with its SO PIN", label, ckrName(err))))
	default:
		return fail(fault.Wrap(fault.Unavailable, err, "log in to PKCS#11 token %q: %s", label, ckrName(err)))
	}
}

func isRefused(sum [32]byte) bool {
	modules.Lock()
	defer modules.Unlock()
	return modules.refused[sum]
}

func (m *p11Module) logout(slot uint) {
	m.tokMu.Lock()
	defer m.tokMu.Unlock()
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
