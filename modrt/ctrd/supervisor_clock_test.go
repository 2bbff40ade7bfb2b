package ctrd

import (
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/containerd/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/edgev2/edgev2/modrt/modspec"
)

// fakeClock is a Clock whose time moves only when the test says so and
// whose timers fire only when the test fires them.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	armed chan *fakeTimer // every AfterFunc, in order
}

type fakeTimer struct {
	d       time.Duration
	f       func()
	stopped atomic.Bool
}

func (t *fakeTimer) Stop() bool { return !t.stopped.Swap(true) }

func (t *fakeTimer) fire() {
	if !t.stopped.Load() {
		go t.f()
	}
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), armed: make(chan *fakeTimer, 64)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Timer {
	t := &fakeTimer{d: d, f: f}
	c.armed <- t // buffered: supervision holds the module's lock here
	return t
}

func (c *fakeClock) next(t *testing.T) *fakeTimer {
	t.Helper()
	select {
	case tm := <-c.armed:
		return tm
	case <-t.Context().Done():
		t.Fatal("no restart was scheduled")
		return nil
	}
}

// TestSupervisorBacksOffOnItsClockAndAStableRunResetsIt drives supervision
// with a fake clock: each exit arms a restart after base·2^step, a run
// that lasted StableAfter on the clock starts the back-off over, and a
// stop by request disarms the pending restart. No back-off is slept through.
func TestSupervisorBacksOffOnItsClockAndAStableRunResetsIt(t *testing.T) {
	clk := newFakeClock()
	e := startRuntime(t, func(c *RuntimeConfig) { c.Clock = clk })
	gate := t.TempDir()
	req := CreateRequest{Name: "crasher", Image: testImage, Restart: modspec.RestartOnFailure, Opts: []oci.SpecOpts{
		// Each run exits 1 once the test opens the gate.
		oci.WithProcessArgs("sh", "-c", "echo run; while [ ! -e /gate/open ]; do sleep 0.02; done; rm /gate/open; exit 1"),
		oci.WithMounts([]specs.Mount{{Destination: "/gate", Type: "bind", Source: gate, Options: []string{"rbind", "rw"}}}),
	}}
	if err := e.rt.Create(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	if err := e.rt.Start(t.Context(), "crasher"); err != nil {
		t.Fatal(err)
	}
	exit := func(run int, uptime time.Duration) *fakeTimer {
		t.Helper()
		e.waitFor(t, "crasher", "running", 30*time.Second, func(s Status) bool {
			return s.State == StateRunning && s.RestartCount == run
		})
		clk.Advance(uptime)
		if err := os.WriteFile(filepath.Join(gate, "open"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		return clk.next(t)
	}
	base := e.cfg.BackoffBase
	for run, want := range []time.Duration{base, 2 * base, 4 * base} {
		tm := exit(run, time.Second)
		if tm.d != want {
			t.Fatalf("after run %d the restart waits %v, want %v", run, tm.d, want)
		}
		if st := e.status(t, "crasher"); st.State != StateRestarting {
			t.Fatalf("after run %d: %+v, want restarting", run, st)
		}
		tm.fire()
	}
	tm := exit(3, e.cfg.StableAfter)
	if tm.d != base {
		t.Fatalf("after a run of StableAfter the restart waits %v, want the back-off reset to %v", tm.d, base)
	}
	if err := e.rt.Stop(t.Context(), "crasher", time.Second); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if !tm.stopped.Load() {
		t.Fatal("a stop by request left the restart armed")
	}
	if st := e.status(t, "crasher"); st.State != StateStopped || st.RestartCount != 3 {
		t.Fatalf("after the stop: %+v", st)
	}
}
