package adapter

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/internal/lru"
	"github.com/edgev2/edgev2/keys"
	"github.com/edgev2/edgev2/keys/api"
)

// Session limits: a caller cannot hold keyd's memory and goroutines without
// bound by opening sessions (each costs a socket, two small buffers and one
// goroutine while idle).
const (
	maxSessionsPerUID = 16
	maxSessions       = 256
	// sessionParallel is how many calls of one session run at once when
	// its peer pipelines them; the session stops reading while that many
	// are in flight. A call that finds nothing else pending runs on the
	// session's reader.
	sessionParallel = 4
	// maxSessionMessage bounds one message on a session: the largest
	// legitimate call (EncryptDerived with 1 MiB of plaintext, derivation
	// and options) fits.
	maxSessionMessage = 4*api.MaxData + 64<<10
	// maxSessionDecisions bounds one session's authorization cache.
	maxSessionDecisions = 4096
	// sessionDecisionTTL bounds a cached decision even if a signal is lost.
	sessionDecisionTTL = 5 * time.Minute
)

// sessionWriteTimeout bounds how long a reply may wait for the peer to
// read: a peer that sends calls and never reads their replies would
// otherwise hold a reader, sessionParallel calls (shared pool workers
// among them) and their messages for as long as it lives. The session is
// closed when it expires. In nanoseconds; tests shorten it.
var sessionWriteTimeout atomic.Int64

func init() { sessionWriteTimeout.Store(int64(30 * time.Second)) }

// processAuthority is what sessions need of polkit: checks with the opener's
// process as subject, and a generation that changes when rules change.
type processAuthority interface {
	CheckProcess(ctx context.Context, p bus.Process, action string, details map[string]string) (allowed, challenge bool, err error)
	RulesGeneration() uint64
}

// sessionRegistry counts open sessions, in all and per opener uid.
type sessionRegistry struct {
	mu    sync.Mutex
	total int
	byUID map[uint32]int
	live  atomic.Int64 // goroutines of sessions still running (tests)
}

func (r *sessionRegistry) reserve(uid uint32) *godbus.Error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byUID == nil {
		r.byUID = map[uint32]int{}
	}
	if r.byUID[uid] >= maxSessionsPerUID {
		return bus.NewError(api.ErrLimitsExceeded, fmt.Sprintf("uid %d already holds %d sessions, the limit; close one first", uid, maxSessionsPerUID))
	}
	if r.total >= maxSessions {
		return bus.NewError(api.ErrLimitsExceeded, fmt.Sprintf("keyd already serves %d sessions, the limit; use the bus", maxSessions))
	}
	r.byUID[uid]++
	r.total++
	return nil
}

func (r *sessionRegistry) release(uid uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.total--
	if r.byUID[uid]--; r.byUID[uid] <= 0 {
		delete(r.byUID, uid)
	}
}

// SessionGoroutines is how many session goroutines (readers and calls in
// flight) are running; 0 once every session has ended.
func (a *BusAPI) SessionGoroutines() int64 { return a.sessions.live.Load() }

// serveOpenSession answers OpenSession(a{sv}) → h: authorise the caller
// once (org.edgev2.keys.session), capture its process as the subject of
// every later per-key check, and hand it one end of a socketpair served
// by a session.
func (a *BusAPI) serveOpenSession(msg *godbus.Message) {
	fd, e := a.openSession(msg)
	if e != nil {
		a.reply(msg, nil, e)
		return
	}
	a.reply(msg, godbus.UnixFD(fd), nil)
	syscall.Close(fd) // the reply carried a duplicate (SCM_RIGHTS)
}

func (a *BusAPI) openSession(msg *godbus.Message) (int, *godbus.Error) {
	sig, _ := msg.Headers[godbus.FieldSignature].Value().(godbus.Signature)
	if sig.String() != "a{sv}" {
		return -1, bus.NewError(errInvalidSignature, fmt.Sprintf("%s.OpenSession takes (a{sv}), not (%s)", api.Interface, sig.String()))
	}
	_, ss, e := options(msg.Body[0].(map[string]godbus.Variant), nil, []string{api.OptOnly, api.OptKeyID})
	if e != nil {
		return -1, e
	}
	only, e := sessionRestriction(ss)
	if e != nil {
		return -1, e
	}
	call := bus.CallOf(*msg)
	if e := a.Authorize(call, api.ActionSession, ""); e != nil {
		return -1, e
	}
	if only != nil {
		// Fail early: a restricted session on a key the opener may not
		// use would refuse every call anyway.
		if e := a.Authorize(call, keyMethods[only.method].action, only.keyID); e != nil {
			return -1, e
		}
	}
	pa, ok := a.Auth.(processAuthority)
	if !ok {
		return -1, bus.NewError(bus.ErrNotSupported, "this keyd cannot authorise sessions; use the bus")
	}
	opener, err := bus.CallerProcess(a.Server.Conn(), call.Sender)
	if err != nil {
		a.Log.Warn("identify session opener", "sender", call.Sender, "err", err)
		return -1, bus.NewError(bus.ErrNotAuthorized, fmt.Sprintf("cannot identify the process behind %s", call.Sender))
	}
	if e := a.sessions.reserve(opener.UID); e != nil {
		return -1, e
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		a.sessions.release(opener.UID)
		return -1, a.Fail(api.MethodOpenSession, fmt.Errorf("socketpair: %w", err))
	}
	f := os.NewFile(uintptr(fds[0]), "keyd-session")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		syscall.Close(fds[1])
		a.sessions.release(opener.UID)
		return -1, a.Fail(api.MethodOpenSession, fmt.Errorf("session socket: %w", err))
	}
	s := &session{a: a, conn: c, opener: opener, pa: pa, gen: pa.RulesGeneration(), only: only,
		cache: lru.New[string, sessionDecision](maxSessionDecisions),
		sem:   make(chan struct{}, sessionParallel)}
	a.sessions.live.Add(1)
	go s.run()
	if only != nil {
		a.Log.Debug("restricted session opened", "sender", call.Sender, "pid", opener.PID, "uid", opener.UID, "only", only.method, "key_id", only.keyID)
	} else {
		a.Log.Debug("session opened", "sender", call.Sender, "pid", opener.PID, "uid", opener.UID)
	}
	return fds[1], nil
}

// restriction narrows a session to one Key method on one key: a holder of
// the descriptor can do that and nothing else, whatever the opener may do.
// It is what lets a service hand a capability to a process it does not
// trust with its other keys (identityd to modrtd: SignDerived on the
// module-key master), and it holds for openers polkit cannot scope (root).
type restriction struct {
	method string
	keyID  string
}

// restrictableMethods are the Key methods a session can be restricted to.
var restrictableMethods = map[string]bool{api.MethodSignDerived: true}

// sessionRestriction reads OpenSession's "only" and "key_id" options: both
// or neither.
func sessionRestriction(ss map[string]string) (*restriction, *godbus.Error) {
	method, hasOnly := ss[api.OptOnly]
	id, hasID := ss[api.OptKeyID]
	switch {
	case !hasOnly && !hasID:
		return nil, nil
	case !hasOnly:
		return nil, bus.NewError(bus.ErrInvalidArgs, "option \"key_id\" needs option \"only\" (the one method the session serves, \"SignDerived\")")
	case !hasID:
		return nil, bus.NewError(bus.ErrInvalidArgs, fmt.Sprintf("option \"only\" needs option \"key_id\" (the one key %s may use)", method))
	case !restrictableMethods[method]:
		return nil, bus.NewError(bus.ErrInvalidArgs, fmt.Sprintf("option \"only\" is %q; a session can be restricted to \"SignDerived\" only", method))
	}
	if err := keys.ValidateID(id); err != nil {
		return nil, bus.ToError(err)
	}
	return &restriction{method: method, keyID: id}, nil
}

// allows reports whether a restricted session serves member on path.
func (r *restriction) allows(member string, path godbus.ObjectPath) *godbus.Error {
	if member == r.method {
		if id, e := keyIDOfPath(path); e == nil && id == r.keyID {
			return nil
		}
	}
	return bus.NewError(bus.ErrAccessDenied, fmt.Sprintf("this session is restricted to %s on key_id %q; %s on %s is refused", r.method, r.keyID, member, path))
}

// session serves Key calls peer-to-peer on one socket, with the opener as
// the subject of every authorization: whoever holds the other end acts as
// the opener (the fd is a capability), and can do no more than it.
type session struct {
	a      *BusAPI
	conn   net.Conn
	opener bus.Process
	pa     processAuthority
	only   *restriction // nil: every Key method the opener may use

	wmu    sync.Mutex
	serial uint32

	mu    sync.Mutex
	gen   uint64
	cache *lru.Cache[string, sessionDecision]

	sem     chan struct{}
	wg      sync.WaitGroup
	revoked atomic.Bool // the opener lost org.edgev2.keys.session
}

type sessionDecision struct {
	allowed bool
	at      time.Time
}

func (s *session) run() {
	defer s.a.sessions.live.Add(-1)
	defer s.a.sessions.release(s.opener.UID)
	stop := context.AfterFunc(s.a.Ctx, func() { s.conn.Close() })
	defer stop()
	defer s.wg.Wait() // calls in flight finish (their replies fail) before the slot is freed
	defer s.conn.Close()
	r := bufio.NewReaderSize(s.conn, 64<<10)
	if err := s.handshake(r); err != nil {
		s.a.Log.Debug("session handshake failed", "pid", s.opener.PID, "err", err)
		return
	}
	for {
		hdr, raw, err := readMessage(r)
		if err != nil {
			var tooBig *messageTooLarge
			if errors.As(err, &tooBig) && tooBig.serial != 0 {
				s.send(encodeMessage(s.nextSerial(), tooBig.serial, bus.ErrInvalidArgs, err.Error()))
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.a.Log.Debug("session ends", "pid", s.opener.PID, "err", err)
			}
			return
		}
		call, lean := parseCall(raw)
		if !lean {
			msg, err := godbus.DecodeMessage(bytes.NewReader(raw))
			if err != nil {
				if hdr.typ == byte(godbus.TypeMethodCall) && hdr.flags&byte(godbus.FlagNoReplyExpected) == 0 {
					s.send(encodeMessage(s.nextSerial(), hdr.serial, errInvalidSignature, "malformed message: "+err.Error()))
				}
				continue
			}
			if msg.Type != godbus.TypeMethodCall {
				continue // replies and signals mean nothing here
			}
			call = callOfMessage(msg)
		}
		if r.Buffered() == 0 && len(s.sem) == 0 {
			// Nothing else is waiting or running: a caller that waits for
			// each reply (the common case) is served here, without
			// handing the call to another goroutine and back.
			s.serve(&call)
			continue
		}
		s.sem <- struct{}{}
		s.wg.Add(1)
		s.a.sessions.live.Add(1)
		s.a.pool.run(func() {
			defer func() { <-s.sem; s.wg.Done(); s.a.sessions.live.Add(-1) }()
			s.serve(&call)
		})
	}
}

func (s *session) nextSerial() uint32 {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.serial++
	if s.serial == 0 {
		s.serial = 1
	}
	return s.serial
}

func (s *session) send(b []byte) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.conn.SetWriteDeadline(time.Now().Add(time.Duration(sessionWriteTimeout.Load())))
	if _, err := s.conn.Write(b); err != nil {
		// A dead peer, or one that does not read: closing ends the reader
		// and fails the other calls' replies at once.
		s.conn.Close()
	}
}

func (s *session) serve(msg *sessionCall) {
	defer func() {
		if s.revoked.Load() {
			s.conn.Close()
		}
	}()
	if s.revoked.Load() {
		s.send(encodeMessage(s.nextSerial(), msg.serial, bus.ErrNotAuthorized, "not authorized for "+api.ActionSession+" any more; the session is closed"))
		return
	}
	v, e := s.dispatch(msg)
	if msg.noReply {
		return
	}
	if e != nil {
		text := ""
		if len(e.Body) > 0 {
			text, _ = e.Body[0].(string)
		}
		s.send(encodeMessage(s.nextSerial(), msg.serial, e.Name, text))
		return
	}
	s.send(encodeMessage(s.nextSerial(), msg.serial, "", v))
}

func (s *session) dispatch(msg *sessionCall) (any, *godbus.Error) {
	iface, member, path, sig := msg.iface, msg.member, msg.path, msg.sig
	switch {
	case iface == "org.freedesktop.DBus.Peer" && member == "Ping":
		return nil, nil
	case s.only != nil:
		if iface != api.KeyInterface && iface != "" {
			return nil, s.only.allows(iface+"."+member, path)
		}
		if e := s.only.allows(member, path); e != nil {
			return nil, e
		}
		return s.a.callKey(member, sig, msg.body, path, s.authorize)
	case iface == api.KeyInterface || iface == "" && keyMethods[member] != nil:
		return s.a.callKey(member, sig, msg.body, path, s.authorize)
	case iface == "":
		return nil, bus.NewError("org.freedesktop.DBus.Error.UnknownMethod", fmt.Sprintf("a Keys session has no method %q", member))
	default:
		return nil, bus.NewError("org.freedesktop.DBus.Error.UnknownInterface",
			fmt.Sprintf("a Keys session serves only %s (and Peer.Ping), not %q", api.KeyInterface, iface))
	}
}

// authorize checks action on key id with the opener as polkit's subject,
// caching the answer for this session until polkit's rules change.
func (s *session) authorize(action, id string) *godbus.Error {
	if s.opener.UID == 0 {
		return nil
	}
	key := action + "\x00" + id
	gen := s.pa.RulesGeneration()
	s.mu.Lock()
	stale := s.gen != gen
	if stale {
		s.cache = lru.New[string, sessionDecision](maxSessionDecisions)
		s.gen = gen
	}
	d, ok := s.cache.Get(key)
	s.mu.Unlock()
	if stale {
		// The rules changed: the opener may have lost the session itself.
		if allowed, _, err := s.pa.CheckProcess(s.a.Ctx, s.opener, api.ActionSession, nil); err != nil || !allowed {
			s.a.Log.Info("session closed: its opener is no longer allowed sessions", "pid", s.opener.PID, "uid", s.opener.UID)
			s.revoked.Store(true) // closed once this reply is sent
			return bus.NewError(bus.ErrNotAuthorized, "not authorized for "+api.ActionSession+" any more; the session is closed")
		}
	}
	if ok && time.Since(d.at) < sessionDecisionTTL {
		return sessionDenial(d.allowed, action, id)
	}
	allowed, _, err := s.pa.CheckProcess(s.a.Ctx, s.opener, action, s.a.Details(id))
	if err != nil {
		s.a.Log.Warn("polkit check for a session failed; denying", "action", action, "key_id", id, "pid", s.opener.PID, "err", err)
		return bus.NewError(bus.ErrNotAuthorized, fmt.Sprintf("not authorized for %s: the authorization service (polkit) is not available", action))
	}
	s.mu.Lock()
	if s.gen == gen && s.pa.RulesGeneration() == gen { // no rule change raced with the check
		s.cache.Put(key, sessionDecision{allowed: allowed, at: time.Now()})
	}
	s.mu.Unlock()
	return sessionDenial(allowed, action, id)
}

func sessionDenial(allowed bool, action, id string) *godbus.Error {
	if allowed {
		return nil
	}
	return bus.NewError(bus.ErrNotAuthorized, fmt.Sprintf("not authorized for %s on key_id %q", action, id))
}
