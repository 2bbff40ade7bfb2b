package dbus

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/edgev2/edgev2/internal/lru"
)

const (
	polkitName      = "org.freedesktop.PolicyKit1"
	polkitPath      = "/org/freedesktop/PolicyKit1/Authority"
	polkitInterface = "org.freedesktop.PolicyKit1.Authority"

	polkitAllowUserInteraction = 1

	// maxDecisionsPerSender bounds one caller's cache: a caller probing many
	// ids cannot grow the daemon's memory without limit (about 150 bytes a
	// decision). A full cache evicts its least recently used decision, one
	// at a time, so a caller cycling over more ids than this pays one polkit
	// round trip per miss, never a dropped cache.
	maxDecisionsPerSender = 4096

	// decisionTTL bounds how long a cached decision lives even when no
	// signal drops it (a lost signal must not grant access forever).
	decisionTTL = 5 * time.Minute
)

// Authorizer asks polkit whether a caller may perform an action, and caches
// decisions per (sender, action, details). The cache is dropped for a sender
// when it leaves the bus (NameOwnerChanged), and entirely when polkit says its
// rules changed (Changed) or polkit itself restarts, so the hot path pays no
// polkit round trip and a revoked rule takes effect at once.
type Authorizer struct {
	conn *godbus.Conn
	log  *slog.Logger
	now  func() time.Time

	maxPerSender int // maxDecisionsPerSender; smaller in tests

	mu              sync.Mutex
	polkitOwner     string                                  // unique name of polkitd; only it may say Changed
	polkitOwnerHint bool                                    // polkitOwner is from NameOwnerChanged, not yet asked
	gen             uint64                                  // bumped on every invalidation
	decisions       map[string]*lru.Cache[string, decision] // sender → key → decision
	uids            map[string]uint32                       // sender → unix uid
	hits            uint64
	misses          uint64

	// rulesGen counts polkit rule changes (Changed, polkitd restarts)
	// only, not callers leaving: caches outside this type (keyd's
	// sessions) compare it to drop what a rule change may have revoked.
	rulesGen atomic.Uint64

	// changedSeen counts the Changed signals handled, honoured or not, so
	// tests can wait for a forged one to have been looked at.
	changedSeen atomic.Uint64
}

type decision struct {
	allowed bool
	at      time.Time
}

// NewAuthorizer subscribes to the signals that invalidate the cache and
// serves them until ctx is done.
func NewAuthorizer(ctx context.Context, conn *godbus.Conn, log *slog.Logger) (*Authorizer, error) {
	a := &Authorizer{
		conn:         conn,
		log:          log,
		now:          time.Now,
		decisions:    map[string]*lru.Cache[string, decision]{},
		uids:         map[string]uint32{},
		maxPerSender: maxDecisionsPerSender,
	}
	if err := conn.AddMatchSignal(
		godbus.WithMatchSender("org.freedesktop.DBus"),
		godbus.WithMatchInterface("org.freedesktop.DBus"),
		godbus.WithMatchMember("NameOwnerChanged"),
		godbus.WithMatchObjectPath("/org/freedesktop/DBus"),
	); err != nil {
		return nil, fmt.Errorf("watch NameOwnerChanged: %w", err)
	}
	if err := conn.AddMatchSignal(
		godbus.WithMatchSender(polkitName),
		godbus.WithMatchInterface(polkitInterface),
		godbus.WithMatchMember("Changed"),
		godbus.WithMatchObjectPath(polkitPath),
	); err != nil {
		return nil, fmt.Errorf("watch polkit Changed: %w", err)
	}
	// Signals sent straight to us bypass match rules, so the handler checks
	// who sent each one: anyone could otherwise flush the cache at will.
	a.polkitOwner = a.currentPolkit()
	ch := make(chan *godbus.Signal, 256)
	conn.Signal(ch)
	go func() {
		defer conn.RemoveSignal(ch)
		for {
			select {
			case <-ctx.Done():
				return
			case sig, ok := <-ch:
				if !ok {
					return
				}
				a.handleSignal(sig)
			}
		}
	}()
	return a, nil
}

func (a *Authorizer) handleSignal(sig *godbus.Signal) {
	switch sig.Name {
	case polkitInterface + ".Changed":
		defer a.changedSeen.Add(1)
		a.mu.Lock()
		owner, hint := a.polkitOwner, a.polkitOwnerHint
		a.mu.Unlock()
		if hint && sig.Sender != "" {
			// The owner came from NameOwnerChanged, whose order godbus
			// does not keep under a flood (a restart's pair swapped
			// would leave it "" and every real Changed ignored until
			// the TTL): ask the bus once, after each change.
			owner = a.currentPolkit()
			a.mu.Lock()
			a.polkitOwner, a.polkitOwnerHint = owner, false
			a.mu.Unlock()
		}
		if sig.Sender == "" || sig.Sender != owner {
			return
		}
		a.log.Info("polkit rules changed; dropping cached authorizations")
		a.invalidateAll()
	case "org.freedesktop.DBus.NameOwnerChanged":
		if len(sig.Body) != 3 || sig.Sender != "org.freedesktop.DBus" {
			return
		}
		name, _ := sig.Body[0].(string)
		newOwner, _ := sig.Body[2].(string)
		switch {
		case name == polkitName:
			a.mu.Lock()
			a.polkitOwner, a.polkitOwnerHint = newOwner, true
			a.mu.Unlock()
			a.invalidateAll()
		case strings.HasPrefix(name, ":") && newOwner == "":
			a.mu.Lock()
			a.gen++
			delete(a.decisions, name)
			delete(a.uids, name)
			a.mu.Unlock()
		}
	}
}

// currentPolkit is the unique name owning polkit's name, "" if none.
func (a *Authorizer) currentPolkit() string {
	var owner string
	if a.conn.BusObject().Call("org.freedesktop.DBus.GetNameOwner", 0, polkitName).Store(&owner) != nil {
		return ""
	}
	return owner
}

func (a *Authorizer) invalidateAll() {
	a.rulesGen.Add(1)
	a.mu.Lock()
	a.gen++
	a.decisions = map[string]*lru.Cache[string, decision]{}
	a.mu.Unlock()
}

// CacheStats returns the number of cache hits and misses so far.
func (a *Authorizer) CacheStats() (hits, misses uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.hits, a.misses
}

// RulesGeneration changes whenever polkit's rules may have changed (its
// Changed signal, polkitd restarting). A cache of decisions made with
// CheckProcess is stale once it differs from the value read when they were
// made.
func (a *Authorizer) RulesGeneration() uint64 { return a.rulesGen.Load() }

func cacheKey(action string, details map[string]string) string {
	if len(details) == 1 { // the common case (key_id): no sort, one allocation
		for k, v := range details {
			return action + "\x00" + k + "=" + v
		}
	}
	keys := make([]string, 0, len(details))
	for k := range details {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(action)
	for _, k := range keys {
		b.WriteByte(0)
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(details[k])
	}
	return b.String()
}

// Authorize returns nil when the caller may perform action on the object
// named in details, and otherwise the error to send: NotAuthorized, or
// InteractiveAuthorizationRequired when polkit would ask for a password but
// the call did not allow interaction. uid 0 is always allowed. polkit absent
// means denied.
func (a *Authorizer) Authorize(ctx context.Context, call Call, action string, details map[string]string) *godbus.Error {
	if call.Sender == "" {
		return NewError(ErrNotAuthorized, "the call has no sender; only bus clients can be authorized")
	}
	uid, derr := a.uid(call.Sender)
	if derr != nil {
		return derr
	}
	if uid == 0 {
		return nil
	}
	key := cacheKey(action, details)
	a.mu.Lock()
	d, ok := a.cached(call.Sender, key)
	if ok && a.now().Sub(d.at) < decisionTTL {
		a.hits++
		a.mu.Unlock()
		return denial(d.allowed, action)
	}
	a.misses++
	gen := a.gen
	a.mu.Unlock()

	allowed, challenge, err := a.check(ctx, call, action, details)
	if err != nil {
		a.log.Warn("polkit check failed; denying", "action", action, "sender", call.Sender, "err", err)
		return NewError(ErrNotAuthorized, fmt.Sprintf("not authorized for %s: the authorization service (polkit) is not available", action))
	}
	if !allowed && challenge {
		if !call.Interactive {
			return NewError(ErrInteractiveNeeded, fmt.Sprintf("%s needs interactive authentication; call with the allow-interactive-authorization flag (busctl --allow-interactive-authorization=yes)", action))
		}
		return denial(false, action)
	}
	a.mu.Lock()
	if a.gen == gen && len(key) <= maxCachedKey { // no invalidation raced with this check
		a.remember(call.Sender, key, allowed)
	}
	a.mu.Unlock()
	return denial(allowed, action)
}

// denial is the refusal of action, or nil if allowed. It names only the
// action: the details' names are the services' (their api packages own
// them), so Adapter adds the entity under its detail key (named).
func denial(allowed bool, action string) *godbus.Error {
	if allowed {
		return nil
	}
	return NewError(ErrNotAuthorized, denialText(action))
}

func denialText(action string) string { return "not authorized for " + action }

// isDenial reports whether e is polkit's refusal of action (denial), not
// another NotAuthorized (polkit absent, caller unknown) that says more.
func isDenial(e *godbus.Error, action string) bool {
	return e != nil && e.Name == ErrNotAuthorized && len(e.Body) == 1 && e.Body[0] == denialText(action)
}

// maxCachedKey bounds the decisions the cache keeps by the size of their
// key (action and details): a caller naming megabyte ids gets its answer
// from polkit every time instead of growing the daemon's memory by a
// megabyte a call (maxDecisionsPerSender counts decisions, not bytes).
const maxCachedKey = 1024

func (a *Authorizer) uid(sender string) (uint32, *godbus.Error) {
	a.mu.Lock()
	uid, ok := a.uids[sender]
	gen := a.gen
	a.mu.Unlock()
	if ok {
		return uid, nil
	}
	creds, err := CallerCredentials(a.conn, sender)
	if err != nil {
		return 0, NewError(ErrNotAuthorized, fmt.Sprintf("cannot identify caller %s", sender))
	}
	uid = creds.UID
	a.mu.Lock()
	if a.gen == gen { // the sender did not leave while we asked
		a.uids[sender] = uid
	}
	a.mu.Unlock()
	return uid, nil
}

type polkitSubject struct {
	Kind    string
	Details map[string]godbus.Variant
}

type polkitResult struct {
	IsAuthorized bool
	IsChallenge  bool
	Details      map[string]string
}

func (a *Authorizer) check(ctx context.Context, call Call, action string, details map[string]string) (allowed, challenge bool, err error) {
	timeout := 25 * time.Second
	var flags uint32
	if call.Interactive {
		flags = polkitAllowUserInteraction
		timeout = 5 * time.Minute // a person may be typing a password
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	subject := polkitSubject{Kind: "system-bus-name", Details: map[string]godbus.Variant{"name": godbus.MakeVariant(call.Sender)}}
	if details == nil {
		details = map[string]string{}
	}
	var res polkitResult
	obj := a.conn.Object(polkitName, polkitPath)
	if err := obj.CallWithContext(ctx, polkitInterface+".CheckAuthorization", 0, subject, action, details, flags, "").Store(&res); err != nil {
		return false, false, err
	}
	return res.IsAuthorized, res.IsChallenge, nil
}

// cached returns sender's decision under key (a.mu held).
func (a *Authorizer) cached(sender, key string) (decision, bool) {
	if m := a.decisions[sender]; m != nil {
		return m.Get(key)
	}
	return decision{}, false
}

// remember caches a decision (a.mu held); a full cache for the sender
// evicts its least recently used decision.
func (a *Authorizer) remember(sender, key string, allowed bool) {
	m := a.decisions[sender]
	if m == nil {
		m = lru.New[string, decision](a.maxPerSender)
		a.decisions[sender] = m
	}
	m.Put(key, decision{allowed: allowed, at: a.now()})
}

// CachedSenders is how many callers have cached decisions (for tests and stats).
func (a *Authorizer) CachedSenders() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.decisions)
}

// CachedDecisions is how many decisions are cached in all (for tests and stats).
func (a *Authorizer) CachedDecisions() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, m := range a.decisions {
		n += m.Len()
	}
	return n
}

// Authority decides whether a call may perform an action. *Authorizer (polkit)
// implements it; service adapters depend on this, not on polkit.
type Authority interface {
	Authorize(ctx context.Context, call Call, action string, details map[string]string) *godbus.Error
}

var _ Authority = (*Authorizer)(nil)

// Permits reports whether peer may receive signals about what action
// protects on the object details names. It is Authorize without interaction,
// except that polkit's challenge (which a signal cannot answer) is cached as
// a refusal, in entries of their own: a peer in an active session then costs
// one polkit round trip, not one per signal. The same invalidations apply.
func (a *Authorizer) Permits(ctx context.Context, peer, action string, details map[string]string) bool {
	if peer == "" {
		return false
	}
	uid, derr := a.uid(peer)
	if derr != nil {
		return false
	}
	if uid == 0 {
		return true
	}
	key := "\x00signal\x00" + cacheKey(action, details)
	a.mu.Lock()
	d, ok := a.cached(peer, key)
	if ok && a.now().Sub(d.at) < decisionTTL {
		a.hits++
		a.mu.Unlock()
		return d.allowed
	}
	a.misses++
	gen := a.gen
	a.mu.Unlock()

	allowed, _, err := a.check(ctx, Call{Sender: peer}, action, details)
	if err != nil {
		a.log.Debug("polkit check for a signal failed; not sending", "action", action, "peer", peer, "err", err)
		return false
	}
	a.mu.Lock()
	if a.gen == gen && len(key) <= maxCachedKey {
		a.remember(peer, key, allowed)
	}
	a.mu.Unlock()
	return allowed
}

// Process is a polkit unix-process subject: a process identified by pid and
// start time (so a recycled pid is a different subject) and the uid the bus
// vouched for.
type Process struct {
	PID       uint32
	StartTime uint64
	UID       uint32
}

// CheckProcess asks polkit, without interaction, whether process p may
// perform action on the object details names. It does not cache: callers
// that cache (keyd's sessions) drop their decisions when RulesGeneration
// changes. uid 0 is always allowed. challenge reports that polkit would have
// asked for a password.
func (a *Authorizer) CheckProcess(ctx context.Context, p Process, action string, details map[string]string) (allowed, challenge bool, err error) {
	if p.UID == 0 {
		return true, false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 25*time.Second)
	defer cancel()
	subject := polkitSubject{Kind: "unix-process", Details: map[string]godbus.Variant{
		"pid":        godbus.MakeVariant(p.PID),
		"start-time": godbus.MakeVariant(p.StartTime),
		"uid":        godbus.MakeVariant(int32(p.UID)),
	}}
	if details == nil {
		details = map[string]string{}
	}
	var res polkitResult
	obj := a.conn.Object(polkitName, polkitPath)
	if err := obj.CallWithContext(ctx, polkitInterface+".CheckAuthorization", 0, subject, action, details, uint32(0), "").Store(&res); err != nil {
		return false, false, err
	}
	return res.IsAuthorized, res.IsChallenge, nil
}
