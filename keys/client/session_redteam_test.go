package client

import (
	"bytes"
	"context"
	"errors"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"

	"github.com/edgev2/edgev2/fault"
)

// A caller whose deadline has already passed (or passes while its call is
// written) gets its context's error; the session, shared by every caller
// of this client, lives on, and a call in flight of another caller still
// gets its reply.
func TestSessionCallerWithAnExpiredDeadlineDoesNotEndTheSession(t *testing.T) {
	s, k := newFakeSession(t)
	done := make(chan error, 1)
	go func() {
		sig, err := signDerived(context.Background(), s, "other")
		if err == nil && string(sig) != "sig other" {
			t.Errorf("got %q", sig)
		}
		done <- err
	}()
	other := k.next(t)
	expired, cancel := context.WithDeadline(context.Background(), time.Unix(1, 0))
	defer cancel()
	if _, err := signDerived(expired, s, "late"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want the context's deadline", err)
	}
	if !s.alive() {
		t.Fatal("one caller's expired deadline ended the session of all")
	}
	k.answer(t, other, []byte("sig other"))
	if err := <-done; err != nil {
		t.Errorf("the other caller: %v", err)
	}
}

// unreadBytes is how many bytes wait in the session socket's receive queue.
func unreadBytes(t *testing.T, s *sessionConn) int {
	t.Helper()
	raw, err := s.c.(*net.UnixConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	n := -1
	raw.Control(func(fd uintptr) { n, err = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// The caller that is reading replies gives up while a long reply (of
// another caller, longer than the read buffer) is half read: the session
// lives on and that other caller gets its reply whole.
func TestSessionReaderGivingUpMidReplyDoesNotEndTheSession(t *testing.T) {
	s, k := newFakeSession(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gaveUp := make(chan error, 1)
	go func() { _, err := signDerived(ctx, s, "reader"); gaveUp <- err }()
	k.next(t)
	for { // the first caller is the one reading
		s.mu.Lock()
		reading := s.reading
		s.mu.Unlock()
		if reading {
			break
		}
		runtime.Gosched()
	}
	long := make([]byte, 256<<10)
	for i := range long {
		long[i] = byte(i)
	}
	got := make(chan []byte, 1)
	go func() {
		sig, err := signDerived(context.Background(), s, "long")
		if err != nil {
			t.Errorf("the caller of the long reply: %v", err)
		}
		got <- sig
	}()
	other := k.next(t)
	msg := replyMsg(t, godbus.TypeMethodReply, other.Serial(), "", long)
	half := len(msg) / 2
	if _, err := k.conn.Write(msg[:half]); err != nil {
		t.Fatal(err)
	}
	for unreadBytes(t, s) != 0 { // the reader took the first half in
		runtime.Gosched()
	}
	cancel()
	if _, err := k.conn.Write(msg[half:]); err != nil {
		t.Errorf("the rest of the long reply: %v", err)
	}
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Errorf("the reader got %v, want its context's error", err)
	}
	if sig := <-got; !bytes.Equal(sig, long) {
		t.Errorf("the long reply came back as %d bytes", len(sig))
	}
	if !s.alive() {
		t.Error("one caller giving up ended the session of all")
	}
}

// A caller whose deadline passes while its long call is half written (keyd
// is slow to read) gets its context's error; the rest of the message is
// still written, so the stream stays whole: the session lives on, keyd
// reads that call intact, and the next call is answered.
func TestSessionCallerTimingOutMidWriteDoesNotEndTheSession(t *testing.T) {
	s, k := newFakeSession(t)
	k.pause()
	t.Cleanup(k.resume)
	// Twice what the socket holds: the write blocks part way. No larger:
	// the fake keyd decodes a byte array a byte at a time (godbus), and 4
	// MiB took it over 10 s under -race on a loaded machine.
	long := bytes.Repeat([]byte("x"), 2*sendBuffer(t, s)+64<<10)
	// The deadline counts from when the call is handed to the socket, so
	// encoding it on a loaded machine does not use it up before a byte is
	// written (the call then fails whole, which is not this case).
	ctx := &deadlineFromWrite{Context: context.Background(), after: 200 * time.Millisecond}
	if _, err := signDerived(ctx, s, string(long)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the context's deadline", err)
	}
	if s.wmu.TryLock() {
		s.wmu.Unlock()
		t.Fatal("the deadline passed before any of the call was written; this test needs it to pass mid-write")
	}
	if !s.alive() {
		t.Fatal("one caller's deadline passing mid-write ended the session of all")
	}
	k.resume()
	if m := k.next(t); len(m.Body) != 3 || !bytes.Equal(m.Body[2].([]byte), long) {
		t.Fatalf("keyd read the half-written call as %d args", len(m.Body))
	}
	done := make(chan error, 1)
	go func() { _, err := signDerived(context.Background(), s, "next"); done <- err }()
	k.answer(t, k.next(t), []byte("sig next"))
	if err := <-done; err != nil {
		t.Fatalf("the next call: %v", err)
	}
}

// Session errors read once: a deadline is not reported as the session
// ending, and a session that ended says so once.
func TestSessionSignDerivedErrorTexts(t *testing.T) {
	s, k := newFakeSession(t)
	expired, cancel := context.WithDeadline(context.Background(), time.Unix(1, 0))
	defer cancel()
	if _, err := signDerived(expired, s, "late"); err == nil || strings.Contains(err.Error(), "ended") || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("an expired deadline: %v", err)
	}
	k.conn.Close()
	_, err := signDerived(context.Background(), s, "after")
	if err == nil || strings.Count(err.Error(), "ended") != 1 || !fault.Is(err, fault.Unavailable) {
		t.Errorf("a closed session: %v", err)
	}
}

// sendBuffer is the session socket's send buffer size.
func sendBuffer(t *testing.T, s *sessionConn) int {
	t.Helper()
	raw, err := s.c.(*net.UnixConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	raw.Control(func(fd uintptr) { n, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF) })
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// deadlineFromWrite is a context whose deadline is set the first time it
// is asked for (the session asks just before writing) and then passes.
type deadlineFromWrite struct {
	context.Context
	after time.Duration

	mu sync.Mutex
	dl time.Time
}

func (c *deadlineFromWrite) Deadline() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dl.IsZero() {
		c.dl = time.Now().Add(c.after)
	}
	return c.dl, true
}

func (c *deadlineFromWrite) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.dl.IsZero() && !time.Now().Before(c.dl) {
		return context.DeadlineExceeded
	}
	return nil
}
