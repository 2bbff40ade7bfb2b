package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	godbus "github.com/godbus/dbus/v5"
)

// sessionConn is one Keys session, spoken by hand: each call is one write
// and its reply is read by the calling goroutine itself. Calls of several
// goroutines are pipelined (keyd serves up to four of a session at once):
// whichever caller is reading hands each reply to its caller by serial,
// and passes the reading on when its own reply has come. A single caller
// thus never waits on another goroutine.
type sessionConn struct {
	c net.Conn
	r *bufio.Reader // only the reading caller uses it

	wmu  sync.Mutex // one message is written at a time
	wbuf []byte
	wdl  time.Time // the write deadline set on c

	mu      sync.Mutex
	serial  uint32
	pending map[uint32]*pendingCall
	reading bool  // a caller is reading replies
	dead    error // why the session ended, or nil

	dmu    sync.Mutex // the reader's deadline: rgen names the reader it is for
	rgen   uint64
	rdl    time.Time
	closed bool
}

// pendingCall is a call waiting for its reply; its fields are guarded by
// sessionConn.mu.
type pendingCall struct {
	wake  chan struct{} // 1 token at most: the reply is in, or this caller is to read
	done  bool
	res   result
	err   error // no reply: the session ended
	woken bool  // asked to read
}

// result is what a reply carried.
type result struct {
	err   error  // a D-Bus error reply (a godbus.Error)
	kind  byte   // 0: no body; 'a': bytes; 'b': boolean; 'v': vals
	bytes []byte // ay
	bool  bool   // b
	vals  []any  // anything else, decoded by godbus
}

var pendingPool = sync.Pool{New: func() any { return &pendingCall{wake: make(chan struct{}, 1)} }}

// errSessionClosed is the error of calls on a session closed by its client.
var errSessionClosed = errors.New("the Keys session is closed")

// dialSession speaks the peer protocol on a session socket; it takes f.
func dialSession(f *os.File) (*sessionConn, error) {
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	s := &sessionConn{c: nc, r: bufio.NewReaderSize(nc, 16<<10), pending: map[uint32]*pendingCall{}}
	nc.SetDeadline(time.Now().Add(30 * time.Second)) // keyd answers the handshake at once
	if err := authenticate(nc, s.r, os.Geteuid()); err != nil {
		nc.Close()
		return nil, err
	}
	nc.SetDeadline(time.Time{})
	return s, nil
}

// alive reports whether the session can still take calls.
func (s *sessionConn) alive() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dead == nil
}

// Close ends the session; calls in flight fail.
func (s *sessionConn) Close() error {
	s.dmu.Lock()
	s.closed = true
	s.dmu.Unlock()
	err := s.c.Close()
	s.fail(errSessionClosed)
	return err
}

// fail ends the session: every waiting call gets err.
func (s *sessionConn) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead == nil {
		s.dead = err
		s.c.Close()
	}
	for serial, p := range s.pending {
		delete(s.pending, serial)
		p.err, p.done = s.dead, true
		p.signal()
	}
	s.reading = false
}

func (p *pendingCall) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *pendingCall) drain() {
	select {
	case <-p.wake:
	default:
	}
}

// call makes one method call and waits for its reply. A D-Bus error reply
// is a godbus.Error in the result; a returned error means the call got no
// reply: ctx ended (the session lives on) or the session ended.
func (s *sessionConn) call(ctx context.Context, path godbus.ObjectPath, iface, member string, args []any) (result, error) {
	p := pendingPool.Get().(*pendingCall)
	s.mu.Lock()
	if s.dead != nil {
		err := s.dead
		s.mu.Unlock()
		release(p)
		return result{}, err
	}
	s.serial++
	for s.serial == 0 || s.pending[s.serial] != nil { // wrapped around
		s.serial++
	}
	serial := s.serial
	s.pending[serial] = p // before the write: the reply cannot come unclaimed
	s.mu.Unlock()
	if err := s.write(ctx, serial, path, iface, member, args); err != nil {
		s.mu.Lock()
		delete(s.pending, serial)
		s.mu.Unlock()
		release(p)
		return result{}, err
	}
	res, err := s.wait(ctx, serial, p)
	release(p)
	return res, err
}

// release returns p to the pool, empty.
func release(p *pendingCall) {
	*p = pendingCall{wake: p.wake}
	p.drain()
	pendingPool.Put(p)
}

func (s *sessionConn) write(ctx context.Context, serial uint32, path godbus.ObjectPath, iface, member string, args []any) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.wmu.Lock()
	unlock := true
	defer func() {
		if unlock {
			s.wmu.Unlock()
		}
	}()
	b, ok := appendCall(s.wbuf[:0], serial, path, iface, member, args)
	if ok {
		if cap(b) <= 64<<10 {
			s.wbuf = b // keep a small buffer for the next call
		}
	} else {
		var err error
		if b, err = encodeCall(serial, path, iface, member, args); err != nil {
			return fmt.Errorf("encode %s.%s: %w", iface, member, err)
		}
	}
	dl, _ := ctx.Deadline()
	if !dl.Equal(s.wdl) {
		s.c.SetWriteDeadline(dl)
		s.wdl = dl
	}
	if n, err := s.c.Write(b); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			// This caller's deadline. The session is the other
			// callers' too: if part of the message is out, the rest is
			// written in the background, still holding wmu, so the
			// stream stays whole (keyd's answer to this call is read
			// and dropped).
			if n > 0 {
				unlock = false
				go s.finishWrite(append([]byte(nil), b[n:]...))
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			return context.DeadlineExceeded
		}
		// Any other failure: part of a message may be out, the stream is lost.
		s.fail(fmt.Errorf("the Keys session ended: %w", err))
		return s.deadErr()
	}
	return nil
}

// finishWriteTimeout bounds writing the rest of a message whose caller
// gave up: a keyd that does not read for that long is not serving.
const finishWriteTimeout = 30 * time.Second

// finishWrite writes rest, the end of a message whose caller's deadline
// passed mid-write, and then releases wmu, which its caller left held.
// Failing (keyd not reading, or Close) ends the session.
func (s *sessionConn) finishWrite(rest []byte) {
	defer s.wmu.Unlock()
	s.wdl = time.Now().Add(finishWriteTimeout)
	s.c.SetWriteDeadline(s.wdl)
	if _, err := s.c.Write(rest); err != nil {
		s.fail(fmt.Errorf("the Keys session ended: %w", err))
	}
}

func (s *sessionConn) deadErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dead
}

// wait returns the reply to serial, reading replies itself whenever no
// other caller does.
func (s *sessionConn) wait(ctx context.Context, serial uint32, p *pendingCall) (result, error) {
	s.mu.Lock()
	for {
		if p.done {
			s.mu.Unlock()
			return p.res, p.err
		}
		if !s.reading || p.woken {
			s.reading, p.woken = true, false
			p.drain()
			s.mu.Unlock()
			err := s.read(ctx, p)
			s.mu.Lock()
			giveUp := err != nil && !p.done // ctx ended while reading; the session lives on
			if giveUp {
				delete(s.pending, serial) // before handOff, which must pick another caller
			}
			if s.reading { // still ours: pass it on
				s.handOff()
			}
			if giveUp {
				s.mu.Unlock()
				return result{}, err
			}
			continue
		}
		s.mu.Unlock()
		select {
		case <-p.wake:
			s.mu.Lock()
		case <-ctx.Done():
			s.mu.Lock()
			if p.done {
				continue
			}
			delete(s.pending, serial)
			if p.woken {
				p.woken = false
				s.handOff()
			}
			p.drain()
			s.mu.Unlock()
			return result{}, ctx.Err()
		}
	}
}

// handOff passes the reading to another waiting caller, if there is one
// (with s.mu held, by the caller that read).
func (s *sessionConn) handOff() {
	s.reading = false
	for _, q := range s.pending {
		if !q.done {
			s.reading, q.woken = true, true
			q.signal()
			return
		}
	}
}

// read reads replies and hands them to their callers until p's has come,
// the session ends (p gets the error) or ctx ends (its error returned).
func (s *sessionConn) read(ctx context.Context, p *pendingCall) error {
	for {
		// Armed per message: readReply disarms it for the rest of a
		// message longer than the buffer.
		stop := s.readDeadline(ctx)
		res, serial, err := s.readReply()
		stop()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Only the deadline of ctx times a read out, and only
				// while peeking: nothing of a message was consumed.
				if err := ctx.Err(); err != nil {
					return err
				}
				return context.DeadlineExceeded
			}
			if errors.Is(err, errGarbled) {
				err = fmt.Errorf("the Keys session ended: keyd sent a message this client cannot read (%w)", err)
			} else {
				err = fmt.Errorf("the Keys session ended: %w", err)
			}
			s.fail(err)
			return nil
		}
		if serial == 0 {
			continue // not a reply
		}
		s.mu.Lock()
		q := s.pending[serial]
		if q != nil { // else the reply to a call whose caller gave up
			delete(s.pending, serial)
			q.res, q.done = res, true
			if q != p {
				q.signal()
			}
		}
		s.mu.Unlock()
		if q == p {
			return nil
		}
	}
}

// readDeadline makes the reader's reads end when ctx does; stop undoes it.
func (s *sessionConn) readDeadline(ctx context.Context) (stop func()) {
	s.dmu.Lock()
	s.rgen++
	gen := s.rgen
	dl, _ := ctx.Deadline()
	if !dl.Equal(s.rdl) {
		s.c.SetReadDeadline(dl)
		s.rdl = dl
	}
	s.dmu.Unlock()
	if ctx.Done() == nil {
		return func() {}
	}
	unregister := context.AfterFunc(ctx, func() {
		s.dmu.Lock()
		defer s.dmu.Unlock()
		if s.rgen == gen && !s.closed { // still that reader's
			s.rdl = time.Unix(1, 0)
			s.c.SetReadDeadline(s.rdl)
		}
	})
	return func() {
		unregister()
		s.dmu.Lock()
		s.rgen++
		s.dmu.Unlock()
	}
}

// disarmReadDeadline lifts the reader's deadline until its next
// readDeadline: the reader's context no longer ends its reads.
func (s *sessionConn) disarmReadDeadline() {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	s.rgen++ // the reader's AfterFunc, if it has not run, does nothing now
	if !s.rdl.IsZero() && !s.closed {
		s.rdl = time.Time{}
		s.c.SetReadDeadline(s.rdl)
	}
}

// errGarbled marks a message that is not a D-Bus message keyd would send.
var errGarbled = errors.New("garbled message")

// readReply reads one message; serial is the call it answers (0: not a
// reply). A timeout error means nothing of a message was consumed.
func (s *sessionConn) readReply() (result, uint32, error) {
	fixed, err := s.r.Peek(16)
	if err != nil {
		return result{}, 0, err
	}
	n, err := frameLength(fixed)
	if err != nil {
		return result{}, 0, fmt.Errorf("%w: %v", errGarbled, err)
	}
	var m []byte
	if n <= s.r.Size() {
		if m, err = s.r.Peek(n); err != nil {
			return result{}, 0, err
		}
		defer s.r.Discard(n)
	} else {
		// Longer than the buffer (a large Decrypt, maybe another
		// caller's): read it whole, whatever this reader's context
		// does meanwhile. A timeout now would leave half a message
		// read, which would end the session of every caller.
		s.disarmReadDeadline()
		m = make([]byte, n)
		if _, err := readFull(s.r, m); err != nil {
			return result{}, 0, err
		}
	}
	res, serial, err := decodeResult(m)
	if err != nil {
		return result{}, 0, fmt.Errorf("%w: %v", errGarbled, err)
	}
	return res, serial, nil
}

// readFull is io.ReadFull that reports a timeout as the end of the session
// (part of the message is gone).
func readFull(r *bufio.Reader, m []byte) (int, error) {
	n := 0
	for n < len(m) {
		k, err := r.Read(m[n:])
		n += k
		if err != nil {
			return n, errors.New("the message was cut short: " + err.Error())
		}
	}
	return n, nil
}

// decodeResult turns one whole message into what its caller gets, copying
// out of m; serial is the call it answers (0: not a reply).
func decodeResult(m []byte) (result, uint32, error) {
	r, err := parseReply(m)
	if err != nil {
		return result{}, 0, err
	}
	switch r.typ {
	case msgError:
		return result{err: godbus.Error{Name: r.errName, Body: []any{r.errorText()}}}, r.replySerial, nil
	case msgReturn:
	default:
		return result{}, 0, nil // calls and signals mean nothing here
	}
	switch r.sig {
	case "":
		return result{}, r.replySerial, nil
	case "ay":
		b, ok := r.bytesBody()
		if !ok {
			return result{}, 0, errors.New("a malformed byte array")
		}
		return result{kind: 'a', bytes: b}, r.replySerial, nil
	case "b":
		v, ok := r.boolBody()
		if !ok {
			return result{}, 0, errors.New("a malformed boolean")
		}
		return result{kind: 'b', bool: v}, r.replySerial, nil
	}
	vals, err := r.values(m)
	if err != nil {
		return result{}, 0, err
	}
	return result{kind: 'v', vals: vals}, r.replySerial, nil
}

// store puts a successful result into out, as godbus's Call.Store does.
func (res *result) store(out []any) error {
	switch {
	case res.kind == 'a' && len(out) == 1:
		if p, ok := out[0].(*[]byte); ok {
			*p = res.bytes
			return nil
		}
		return godbus.Store([]any{res.bytes}, out...)
	case res.kind == 'b' && len(out) == 1:
		if p, ok := out[0].(*bool); ok {
			*p = res.bool
			return nil
		}
		return godbus.Store([]any{res.bool}, out...)
	case res.kind == 'v':
		return godbus.Store(res.vals, out...)
	case len(out) == 0:
		return nil
	}
	return godbus.Store(nil, out...)
}
