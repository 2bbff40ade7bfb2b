package client

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/internal/fault"
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
	return c.sess.conn != nil && c.sess.conn.Connected()
}

type sessionState struct {
	mu      sync.Mutex
	conn    *godbus.Conn
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
	for range 2 {
		pc := c.sess.get(ctx, c)
		if pc == nil {
			return nil, false
		}
		err := pc.Object("", path).CallWithContext(ctx, method, 0, args...).Store(out...)
		if err == nil {
			return nil, true
		}
		var de godbus.Error
		var dep *godbus.Error
		if errors.As(err, &de) || errors.As(err, &dep) || ctx.Err() != nil {
			return bus.FromError(err), true
		}
		c.sess.drop(pc) // the session died: open another one, or use the bus
	}
	return nil, false
}

func (s *sessionState) drop(pc *godbus.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == pc {
		s.conn.Close()
		s.conn = nil
	}
}

func (s *sessionState) get(ctx context.Context, c *Client) *godbus.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil && s.conn.Connected() {
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
func openSession(ctx context.Context, conn *godbus.Conn) (*godbus.Conn, error) {
	f, err := callOpenSession(ctx, conn, noOptions())
	if err != nil {
		return nil, err
	}
	return peerConn(f)
}

func callOpenSession(ctx context.Context, conn *godbus.Conn, opts map[string]godbus.Variant) (*os.File, error) {
	var fd godbus.UnixFD
	if err := conn.Object(api.BusName, rootPath).CallWithContext(ctx, member(api.Interface, api.MethodOpenSession), 0, opts).Store(&fd); err != nil {
		return nil, bus.FromError(err)
	}
	return os.NewFile(uintptr(fd), "keys-session"), nil
}

// peerConn speaks the peer protocol on a session socket; it takes f.
func peerConn(f *os.File) (*godbus.Conn, error) {
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	pc, err := godbus.NewConn(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	if err := pc.Auth([]godbus.Auth{godbus.AuthExternal(strconv.Itoa(os.Geteuid()))}); err != nil {
		pc.Close()
		return nil, err
	}
	return pc, nil
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
type Session struct{ pc *godbus.Conn }

// SessionFromFile speaks the peer protocol on a session socket; it takes f.
func SessionFromFile(f *os.File) (*Session, error) {
	pc, err := peerConn(f)
	if err != nil {
		return nil, fault.Wrap(fault.Unavailable, err, "Keys session: %v", err)
	}
	return &Session{pc: pc}, nil
}

// SignDerived is Key.SignDerived (hmac-sha256) over the session. An error
// keyd answered is a fault error of its kind; a dead session is
// fault.Unavailable.
func (s *Session) SignDerived(ctx context.Context, keyID string, derivation, data []byte) ([]byte, error) {
	var out []byte
	err := s.pc.Object("", bus.ChildPath(rootPath, api.Collection, keyID)).CallWithContext(ctx, member(api.KeyInterface, api.MethodSignDerived), 0, derivation, api.MechHMACSHA256, data).Store(&out)
	if err == nil {
		return out, nil
	}
	var de godbus.Error
	var dep *godbus.Error
	if errors.As(err, &de) || errors.As(err, &dep) {
		return nil, bus.FromError(err)
	}
	return nil, fault.Wrap(fault.Unavailable, err, "the Keys session ended: %v", err)
}

// Alive reports whether the session's connection is still up.
func (s *Session) Alive() bool { return s.pc.Connected() }

// Close ends the session.
func (s *Session) Close() error { return s.pc.Close() }

func isKeyMethod(method string) bool { return strings.HasPrefix(method, api.KeyInterface+".") }
