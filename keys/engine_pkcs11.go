// The PKCS#11 engine: keys on a token (SoftHSM, tpm2-pkcs11, an HSM), opened
// from an RFC 7512 URI. The engine's parts are in *_pkcs11.go: modules and
// logins (module_pkcs11.go), slots and their session pools (slot_pkcs11.go),
// key objects (store_pkcs11.go, manage_pkcs11.go), handles and primitives
// (handle_pkcs11.go), CKR errors (ckr_pkcs11.go).

package keys

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/edgev2/edgev2/fault"
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

	// writes serialises Generate/Import/Delete/Move on the base token. A
	// one-slot semaphore, not a mutex: a write may stay in a token that
	// stops answering, so it is waited for with a bound (lockWrites).
	writes chan struct{}

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
	return &PKCS11Engine{log: logger, mod: mod, pool: poolSize, others: map[string]*p11Slot{}, writes: make(chan struct{}, 1)}, nil
}

// lockWrites waits for the other writes on the base token to end, at most
// p11CallLimit (one may be stuck in a token that does not answer) or
// until ctx ends. Matched by unlockWrites when nil.
func (e *PKCS11Engine) lockWrites(ctx context.Context, slot *p11Slot) error {
	select {
	case e.writes <- struct{}{}:
		return nil
	default:
	}
	timer := time.NewTimer(p11CallLimit)
	defer timer.Stop()
	select {
	case e.writes <- struct{}{}:
		return nil
	case <-timer.C:
		return notAnswering(slot.who(), "an earlier change to its keys")
	case <-ctx.Done():
		return fault.Wrap(fault.Unavailable, ctx.Err(), "wait for another change to the keys on PKCS#11 token %q: %v", slot.label, ctx.Err())
	}
}

func (e *PKCS11Engine) unlockWrites() { <-e.writes }

// Name implements Engine.
func (e *PKCS11Engine) Name() string { return "pkcs11" }

// Close returns all sessions, logs out and finalises the module when no
// other engine in the process still uses it. It returns within about two
// p11CallLimit even when a token does not answer (watchdog_pkcs11.go).
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

	// Each close and release is bounded (a token that does not answer is
	// given up on); done side by side, Close is bounded by one of each.
	var wg sync.WaitGroup
	mods := map[*p11Module]int{}
	for _, s := range slots {
		mods[s.mod]++
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.close()
		}()
	}
	wg.Wait()
	// Each slot holds a module reference; the engine holds one more.
	mods[e.mod]++
	for m, n := range mods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n; i++ {
				m.release()
			}
		}()
	}
	wg.Wait()
	return nil
}

func (e *PKCS11Engine) needBase() (*p11Slot, error) {
	if e.base == nil {
		return nil, fault.New(fault.InvalidArgs, "no pkcs11_base_slot configured: the pkcs11 engine can only use preloaded pkcs11: keys")
	}
	return e.base, nil
}
