package ctrd

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/modrt/logstore"
	"github.com/edgev2/edgev2/modrt/modspec"
)

// TestReopenedRuntimeHandlesOrphanedModules: after a purge and reinstall
// (modrtd's state directory wiped while modules run) or with a fifo
// replaced by something else, the running tasks cannot be re-attached.
// OpenRuntime must not fail over them (modrtd would crash-loop): it stops
// each orphan, and supervision starts it afresh with new output fifos, while
// an intact module next to it is adopted as it runs.
func TestReopenedRuntimeHandlesOrphanedModules(t *testing.T) {
	cases := []struct {
		name    string
		breakIt func(t *testing.T, e *rtEnv, name string)
	}{
		{"state dir wiped (purge and reinstall)", func(t *testing.T, e *rtEnv, name string) {
			// A purge deletes all of /var/lib/edgev2, the intact module's too.
			if err := os.RemoveAll(filepath.Join(e.cfg.StateDir, "fifo", name)); err != nil {
				t.Fatal(err)
			}
			os.Remove(filepath.Join(e.cfg.StateDir, "modules", name+".json"))
			os.RemoveAll(filepath.Join(e.cfg.StateDir, "logs", name))
		}},
		{"fifo replaced by a symlink to a device", func(t *testing.T, e *rtEnv, name string) {
			p := filepath.Join(e.cfg.StateDir, "fifo", name, "stdout")
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("/dev/zero", p); err != nil {
				t.Fatal(err)
			}
		}},
		{"fifo replaced by a regular file", func(t *testing.T, e *rtEnv, name string) {
			p := filepath.Join(e.cfg.StateDir, "fifo", name, "stderr")
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := startRuntime(t)
			e.create(t, "orphan", modspec.RestartAlways, tickScript)
			e.create(t, "intact", modspec.RestartAlways, tickScript)
			for _, n := range []string{"orphan", "intact"} {
				if err := e.rt.Start(t.Context(), n); err != nil {
					t.Fatal(err)
				}
			}
			orphan, intact := e.status(t, "orphan"), e.status(t, "intact")
			if err := e.rt.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			tc.breakIt(t, e, "orphan")

			e.open(t) // fails the test if OpenRuntime returns an error
			st := e.waitFor(t, "orphan", "restarted afresh", 20*time.Second, func(s Status) bool {
				return s.State == StateRunning && s.Pid != 0 && s.Pid != orphan.Pid
			})
			if err := syscall.Kill(int(orphan.Pid), 0); err == nil {
				t.Errorf("the orphaned task (pid %d) still runs next to its replacement %d", orphan.Pid, st.Pid)
			}
			// Its output is captured again, from the new task's start.
			var fresh string
			testenv.WaitFor(20*time.Second, func() bool {
				stdout, _, _ := logText(t, e.rt, "orphan", logstore.Options{Tail: -1})
				i := strings.LastIndex(stdout, "tick 0\n")
				if i >= 0 {
					fresh = stdout[i:]
				}
				return i >= 0 && strings.Count(fresh, "\n") >= 3
			})
			assertTicksContiguous(t, fresh, 3)
			if got := e.status(t, "intact"); got.State != StateRunning || got.Pid != intact.Pid {
				t.Fatalf("the intact module next to the orphan: %+v, want still %d running", got, intact.Pid)
			}
			if fi, err := os.Lstat(filepath.Join(e.cfg.StateDir, "fifo", "orphan", "stdout")); err != nil || fi.Mode().Type() != os.ModeNamedPipe {
				t.Fatalf("the restarted module's stdout is not a fresh fifo: %v, %v", fi, err)
			}
		})
	}
}
