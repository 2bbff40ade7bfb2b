package client

import (
	"context"
	"errors"
	"testing"
	"time"
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
