package ctrd

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/modrt/logstore"
	"github.com/edgev2/edgev2/modrt/modspec"
)

// TestShutdownStopsModulesAndTheNextBootStartsThemAgain: at system
// shutdown modrtd stops every running module itself (SIGTERM, SIGKILL after
// the stop timeout for one that ignores it) instead of leaving them to
// systemd-shutdown's final sweep, records none of them as stopped by
// request, and the next runtime (the next boot) starts them again by their
// policy -- while a module stopped by request stays stopped.
func TestShutdownStopsModulesAndTheNextBootStartsThemAgain(t *testing.T) {
	e := startRuntime(t)
	e.create(t, "polite", modspec.RestartAlways, "trap 'echo bye; exit 0' TERM; echo up; while true; do sleep 0.1; done")
	e.create(t, "stubborn", modspec.RestartAlways, "") // sleep as pid 1: SIGTERM has no effect
	e.create(t, "parked", modspec.RestartAlways, "")
	for _, n := range []string{"polite", "stubborn", "parked"} {
		if err := e.rt.Start(t.Context(), n); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.rt.Stop(t.Context(), "parked", time.Second); err != nil {
		t.Fatal(err)
	}
	waitTicksFor(t, e, "polite", "up\n")
	before := map[string]Status{"polite": e.status(t, "polite"), "stubborn": e.status(t, "stubborn")}

	rt := e.rt
	if err := rt.Shutdown(500 * time.Millisecond); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	for n, st := range before {
		if err := syscall.Kill(int(st.Pid), 0); err == nil {
			t.Errorf("module %s (pid %d) still runs after Shutdown", n, st.Pid)
		}
	}

	e.open(t) // the next boot: tasks are gone
	for n, old := range before {
		st := e.waitFor(t, n, "started again", 20*time.Second, func(s Status) bool {
			return s.State == StateRunning && s.Pid != 0 && s.Pid != old.Pid
		})
		if st.State != StateRunning {
			t.Fatalf("%s after the reboot: %+v", n, st)
		}
	}
	if st := e.status(t, "parked"); st.State != StateStopped {
		t.Fatalf("a module stopped by request was started by the reboot: %+v", st)
	}
	// polite got its SIGTERM and said goodbye, in its log.
	stdout, _, _ := logText(t, e.rt, "polite", logstore.Options{Tail: -1})
	if !strings.Contains(stdout, "bye\n") {
		t.Fatalf("polite's log has no goodbye: it was not sent SIGTERM, or its output was lost: %q", stdout)
	}
}

func waitTicksFor(t *testing.T, e *rtEnv, name, want string) {
	t.Helper()
	testenv.Eventually(t, 20*time.Second, func() bool {
		stdout, _, _ := logText(t, e.rt, name, logstore.Options{Tail: -1})
		return strings.Contains(stdout, want)
	}, "module %s never wrote %q", name, want)
}
