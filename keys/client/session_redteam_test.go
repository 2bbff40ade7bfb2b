package client

import (
	"bytes"
	"context"
	"errors"
	"net"
	"runtime"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"
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
