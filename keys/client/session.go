package client

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/keys/api"
)

// How long a client waits before asking for a session again after keyd
// refused one (no grant, an older keyd, the limit) or opening failed.
const sessionRetry = 30 * time.Second

// WithSession returns a client whose key operations (Sign, Verify,
// Encrypt, Decrypt and the Derived ones, crypto.Signer included) go over a
// direct session to keyd (Keys1.OpenSession) instead of through the bus
// daemon. When keyd refuses a session the calls go over the bus, and a
// session that dies is reopened on the next call. Close the client to end
// the session. Everything else still goes over the bus.
func (c *Client) WithSession() *Client {
	cc := *c
	cc.sess = &sessionState{}
	return &cc
}

// Close ends the client's session, if it has one. The bus connection is
// the caller's and stays open.
func (c *Client) Close() error {
	if c.sess == nil {
		return nil
	}
	c.sess.mu.Lock()
	defer c.sess.mu.Unlock()
	c.sess.closed = true
	if c.sess.conn != nil {
		err := c.sess.conn.Close()
		c.sess.conn = nil
		return err
	}
	return nil
}

// UsingSession reports whether the client has a live session now (for
// tests and diagnostics).
func (c *Client) UsingSession() bool {
	if c.sess == nil {
		return false
	}
	c.sess.mu.Lock()
	defer c.sess.mu.Unlock()
	return c.sess.conn != nil && c.sess.conn.alive()
}

type sessionState struct {
	mu      sync.Mutex
	conn    *sessionConn
	retryAt time.Time
	closed  bool
	lastErr error
}

// SessionError is why the last OpenSession failed, or nil.
func (c *Client) SessionError() error {
	if c.sess == nil {
		return nil
	}
	c.sess.mu.Lock()
	defer c.sess.mu.Unlock()
	return c.sess.lastErr
}

// sessionCall makes a Key call over the session; handled is false when the
// call should go over the bus instead.
func (c *Client) sessionCall(ctx context.Context, path godbus.ObjectPath, method string, out []any, args ...any) (err error, handled bool) {
	iface, name := splitMember(method)
	for range 2 {
		pc := c.sess.get(ctx, c)
		if pc == nil {
			return nil, false
		}
		res, err := pc.call(ctx, path, iface, name, args)
		if err == nil {
			if res.err != nil {
				return bus.FromError(res.err), true
			}
			if err := res.store(out); err != nil {
				return bus.FromError(err), true
			}
			return nil, true
		}
		if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return bus.FromError(err), true // the call timed out; the session lives on
		}
		c.sess.drop(pc) // the session died: open another one, or use the bus
	}
	return nil, false
}

// splitMember splits "interface.Method".
func splitMember(m string) (iface, name string) {
	i := strings.LastIndexByte(m, '.')
	if i < 0 {
		return "", m
	}
	return m[:i], m[i+1:]
}

func (s *sessionState) drop(pc *sessionConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == pc {
		s.conn.Close()
		s.conn = nil
	}
}

func (s *sessionState) get(ctx context.Context, c *Client) *sessionConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil && s.conn.alive() {
		return s.conn
	}
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
	if s.closed || time.Now().Before(s.retryAt) {
		return nil
	}
	pc, err := openSession(ctx, c.caller.Conn)
	if err != nil {
		s.lastErr = err
		s.retryAt = time.Now().Add(sessionRetry)
		slog.Debug("no Keys session; using the bus", "err", err)
		return nil
	}
	s.lastErr = nil
	s.conn = pc
	return pc
}

// openSession asks keyd for a session and speaks the peer protocol on it.
func openSession(ctx context.Context, conn *godbus.Conn) (*sessionConn, error) {
	f, err := callOpenSession(ctx, conn, noOptions())
	if err != nil {
		return nil, err
	}
	return dialSession(f)
}

func callOpenSession(ctx context.Context, conn *godbus.Conn, opts map[string]godbus.Variant) (*os.File, error) {
	var fd godbus.UnixFD
	if err := conn.Object(api.BusName, rootPath).CallWithContext(ctx, member(api.Interface, api.MethodOpenSession), 0, opts).Store(&fd); err != nil {
		return nil, bus.FromError(err)
	}
	return os.NewFile(uintptr(fd), "keys-session"), nil
}

// OpenRestrictedSession opens a session that serves only method ("SignDerived")
// on key keyID, and returns its socket unused, to be handed to another
// process: the descriptor is a capability to do that one thing as this
// client's caller, for as long as the session lives (shutdown(2) on any
// duplicate of it ends it for every holder).
func (c *Client) OpenRestrictedSession(ctx context.Context, method, keyID string) (*os.File, error) {
	return callOpenSession(ctx, c.caller.Conn, map[string]godbus.Variant{
		api.OptOnly: godbus.MakeVariant(method), api.OptKeyID: godbus.MakeVariant(keyID)})
}

// Session is a Keys session received from another process (a restricted
// session, such as Identity1.OpenModuleSigner hands out). It has no bus
// to fall back on: when it fails, its holder asks for another.
type Session struct{ pc *sessionConn }

// SessionFromFile speaks the peer protocol on a session socket; it takes f.
func SessionFromFile(f *os.File) (*Session, error) {
	pc, err := dialSession(f)
	if err != nil {
		return nil, fault.Wrap(fault.Unavailable, err, "Keys session: %v", err)
	}
	return &Session{pc: pc}, nil
}

// SignDerived is Key.SignDerived (hmac-sha256) over the session. An error
// keyd answered is a fault error of its kind; a dead session is
// fault.Unavailable.
func (s *Session) SignDerived(ctx context.Context, keyID string, derivation, data []byte) ([]byte, error) {
	res, err := s.pc.call(ctx, bus.ChildPath(rootPath, api.Collection, keyID), api.KeyInterface, api.MethodSignDerived,
		[]any{derivation, api.MechHMACSHA256, data})
	if err != nil {
		// A context's error (the session lives on) or why the session
		// ended, which says so already.
		return nil, fault.Wrap(fault.Unavailable, err, "Keys session call: %v", err)
	}
	if res.err != nil {
		return nil, bus.FromError(res.err)
	}
	var out []byte
	if err := res.store([]any{&out}); err != nil {
		return nil, fault.Wrap(fault.Unavailable, err, "the Keys session ended: %v", err)
	}
	return out, nil
}

// Alive reports whether the session's connection is still up.
func (s *Session) Alive() bool { return s.pc.alive() }

// Close ends the session.
func (s *Session) Close() error { return s.pc.Close() }

func isKeyMethod(method string) bool { return strings.HasPrefix(method, api.KeyInterface+".") }
