package testenv

import (
	"fmt"
	"time"

	godbus "github.com/godbus/dbus/v5"
)

// Polling starts at pollMin and doubles up to pollMax, so a condition that
// holds at once costs nothing and a slow one (a command run in a container)
// is not asked more than a few times a second.
const (
	pollMin = 2 * time.Millisecond
	pollMax = 250 * time.Millisecond
)

// WaitFor calls cond until it returns true or timeout has passed, and
// reports whether it did. It is for harness code that reports its own
// error; tests use Eventually.
func WaitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for wait := pollMin; ; wait = min(2*wait, pollMax) {
		if cond() {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		time.Sleep(min(wait, left))
	}
}

// Eventually calls cond until it returns true; if timeout passes first, it
// fails t with the message (a format and its args). cond may itself call
// t.Fatalf for a state that can never become right.
//
//	testenv.Eventually(t, 30*time.Second, func() bool {
//		st, _ := ic.State(ctx)
//		return st == "provisioned"
//	}, "identityd did not provision")
func Eventually(t TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	if !WaitFor(timeout, cond) {
		t.Fatalf("not within %v: %s", timeout, fmt.Sprintf(format, args...))
	}
}

// EventuallyNoError is Eventually for a step that fails until it succeeds:
// it calls f until f returns nil and on timeout fails t with the message
// and f's last error.
func EventuallyNoError(t TB, timeout time.Duration, f func() error, format string, args ...any) {
	t.Helper()
	var last error
	if !WaitFor(timeout, func() bool { last = f(); return last == nil }) {
		t.Fatalf("not within %v: %s: %v", timeout, fmt.Sprintf(format, args...), last)
	}
}

// Signals is a subscription to signals on one connection, kept in arrival
// order from WatchSignals on: a test that triggers something and waits for
// the signal announcing it cannot miss a signal sent before it starts
// waiting, and needs no polling.
type Signals struct {
	ch chan *godbus.Signal
}

// WatchSignals adds the match rule opts (e.g. godbus.WithMatchInterface,
// godbus.WithMatchSender) on conn and collects the signals conn receives
// until the test ends. conn may receive signals of other rules too: Next
// picks by its match function.
func WatchSignals(t TB, conn *godbus.Conn, opts ...godbus.MatchOption) *Signals {
	t.Helper()
	s := &Signals{ch: make(chan *godbus.Signal, signalBuffer)}
	conn.Signal(s.ch)
	if err := conn.AddMatchSignal(opts...); err != nil {
		conn.RemoveSignal(s.ch)
		t.Fatalf("watch signals: %v", err)
	}
	t.Cleanup(func() {
		conn.RemoveMatchSignal(opts...)
		conn.RemoveSignal(s.ch)
	})
	return s
}

// signalBuffer is how many signals a subscription holds before godbus
// delivers further ones from goroutines (out of order with replies).
const signalBuffer = 4096

// Named matches signals by their interface.member name.
func Named(name string) func(*godbus.Signal) bool {
	return func(s *godbus.Signal) bool { return s.Name == name }
}

// NameOwnerChanged matches the bus's NameOwnerChanged signals about name
// (watch them with godbus.WithMatchSender("org.freedesktop.DBus")).
func NameOwnerChanged(name string) func(*godbus.Signal) bool {
	return func(s *godbus.Signal) bool {
		if s.Name != "org.freedesktop.DBus.NameOwnerChanged" || len(s.Body) < 1 {
			return false
		}
		n, _ := s.Body[0].(string)
		return n == name
	}
}

// Next waits for the next signal that match accepts, skipping the others,
// and fails t with the message if none arrives within timeout.
func (s *Signals) Next(t TB, timeout time.Duration, match func(*godbus.Signal) bool, format string, args ...any) *godbus.Signal {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case sig, ok := <-s.ch:
			if !ok {
				t.Fatalf("waiting for a signal: the connection closed: %s", fmt.Sprintf(format, args...))
				return nil
			}
			if match(sig) {
				return sig
			}
		case <-timer.C:
			t.Fatalf("no signal within %v: %s", timeout, fmt.Sprintf(format, args...))
			return nil
		}
	}
}

// Pending returns the signals that have arrived and not been taken by Next,
// without waiting, and takes them. Use it after a barrier -- a reply from
// the sender of the signals, which the bus delivers after every signal that
// sender emitted before it, and godbus hands over in that order while fewer
// than signalBuffer signals wait -- to check that something did not happen,
// instead of sleeping and looking.
func (s *Signals) Pending() []*godbus.Signal {
	var out []*godbus.Signal
	for {
		select {
		case sig := <-s.ch:
			out = append(out, sig)
		default:
			return out
		}
	}
}
