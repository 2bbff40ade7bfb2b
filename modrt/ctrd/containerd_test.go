package ctrd

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgev2/edgev2/modrt/logstore"

	"github.com/containerd/containerd/oci"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/modrt/modspec"
)

const testImage = "example.com/edgev2/busybox:test"

// rtEnv is a private containerd with the busybox test image imported
// through the runtime, in a namespace of the test's own (runc state and
// cgroups are per namespace and container name, shared between daemons).
type rtEnv struct {
	c   *testenv.Containerd
	cfg RuntimeConfig
	rt  *Runtime

	mu      sync.Mutex
	changes []Status
	log     testenv.Buffer // the runtime's log, also written to the test's output
}

// openRuntime opens a Runtime on containerd c in a namespace of its own,
// configured by configure.
func openRuntime(t *testing.T, c *testenv.Containerd, configure ...func(*RuntimeConfig)) *rtEnv {
	t.Helper()
	suffix := make([]byte, 4)
	rand.Read(suffix)
	e := &rtEnv{c: c, cfg: RuntimeConfig{
		Address:   c.Address,
		Namespace: "edgev2-test-" + hex.EncodeToString(suffix),
		StateDir:  t.TempDir(),
	}}
	e.cfg.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), &e.log), nil))
	for _, f := range configure {
		f(&e.cfg)
	}
	e.open(t)
	return e
}

// startRuntime is a Runtime with quick restarts on a containerd of its
// own, holding testImage.
func startRuntime(t *testing.T, configure ...func(*RuntimeConfig)) *rtEnv {
	t.Helper()
	quick := func(cfg *RuntimeConfig) {
		cfg.BackoffBase, cfg.BackoffCap, cfg.StableAfter = 200*time.Millisecond, 2*time.Second, 30*time.Second
	}
	e := openRuntime(t, testenv.StartContainerd(t), append([]func(*RuntimeConfig){quick}, configure...)...)
	archive := testenv.BuildImage(t, testImage, testenv.ImageConfig{Cmd: []string{"sleep", "3600"}})
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names, err := e.rt.ImportImage(t.Context(), f)
	if err != nil {
		t.Fatalf("import image: %v", err)
	}
	if len(names) != 1 || names[0] != testImage {
		t.Fatalf("import returned %q, want [%s]", names, testImage)
	}
	if imgs, err := e.rt.Images(t.Context()); err != nil || len(imgs) != 1 || imgs[0].Name != testImage || imgs[0].Digest == "" {
		t.Fatalf("images after import: %+v, %v", imgs, err)
	}
	return e
}

func (e *rtEnv) open(t *testing.T) {
	t.Helper()
	rt, err := OpenRuntime(t.Context(), e.cfg)
	if err != nil {
		t.Fatalf("open runtime: %v", err)
	}
	rt.OnChange(func(s Status) {
		e.mu.Lock()
		e.changes = append(e.changes, s)
		e.mu.Unlock()
	})
	e.rt = rt
	t.Cleanup(func() { rt.Close() })
}

func (e *rtEnv) create(t *testing.T, name string, policy modspec.RestartPolicy, script string) {
	t.Helper()
	req := CreateRequest{Name: name, Image: testImage, Restart: policy}
	if script != "" {
		req.Opts = []oci.SpecOpts{oci.WithProcessArgs("sh", "-c", script)}
	}
	if err := e.rt.Create(t.Context(), req); err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
}

// assertSettled fails t unless module name is in a state want accepts
// with no task and no restart pending: supervision restarts a module only
// from an armed restart timer (restartFromTimer), so a settled module stays
// as it is until a request changes it. This is what a sleep-then-look
// would check, without the sleep.
func (e *rtEnv) assertSettled(t *testing.T, name, what string, want func(Status) bool) {
	t.Helper()
	m, err := e.rt.module(name)
	if err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	st, task, armed := m.statusLocked(), m.task, m.timerArmed
	m.mu.Unlock()
	if !want(st) || task != nil || armed {
		t.Fatalf("module %s: %s; status %+v, task %v, restart armed %v", name, what, st, task != nil, armed)
	}
}

func (e *rtEnv) status(t *testing.T, name string) Status {
	t.Helper()
	st, err := e.rt.Status(t.Context(), name)
	if err != nil {
		t.Fatalf("status %s: %v", name, err)
	}
	return st
}

func (e *rtEnv) waitFor(t *testing.T, name, what string, timeout time.Duration, ok func(Status) bool) Status {
	t.Helper()
	var st Status
	if !testenv.WaitFor(timeout, func() bool { st = e.status(t, name); return ok(st) }) {
		t.Fatalf("module %s: %s not reached within %v; status %+v", name, what, timeout, st)
	}
	return st
}

func (e *rtEnv) runningStarts(name string) []time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	var ts []time.Time
	for _, s := range e.changes {
		if s.Name == name && s.State == StateRunning {
			ts = append(ts, s.StartedAt)
		}
	}
	return ts
}

func logText(t *testing.T, rt *Runtime, name string, opts logstore.Options) (stdout, stderr string, frames []logstore.Frame) {
	t.Helper()
	rc, err := rt.Logs(name, opts)
	if err != nil {
		t.Fatalf("logs %s: %v", name, err)
	}
	defer rc.Close()
	frames, err = logstore.ParseFrames(rc)
	if err != nil {
		t.Fatalf("parse log frames: %v", err)
	}
	var out, errb bytes.Buffer
	for _, f := range frames {
		if f.Stream == logstore.StreamStdout {
			out.Write(f.Payload)
		} else {
			errb.Write(f.Payload)
		}
	}
	return out.String(), errb.String(), frames
}

func TestModuleThatEchoesAndExitsReportsStatusAndFramedLogs(t *testing.T) {
	e := startRuntime(t)
	e.create(t, "echoer", modspec.RestartNever, "echo out1; echo err1 >&2; echo out2; exit 0")
	if st := e.status(t, "echoer"); st.State != StateCreated || st.Image != testImage {
		t.Fatalf("after create: %+v, want created from %s", st, testImage)
	}
	before := time.Now()
	if err := e.rt.Start(t.Context(), "echoer"); err != nil {
		t.Fatalf("start: %v", err)
	}
	st := e.waitFor(t, "echoer", "stopped", 10*time.Second, func(s Status) bool { return s.State == StateStopped })
	if st.ExitCode != 0 || st.RestartCount != 0 || st.Pid != 0 || st.StartedAt.Before(before) || st.FinishedAt.Before(st.StartedAt) {
		t.Fatalf("status after a clean exit: %+v", st)
	}
	stdout, stderr, _ := logText(t, e.rt, "echoer", logstore.Options{Tail: -1})
	if stdout != "out1\nout2\n" || stderr != "err1\n" {
		t.Fatalf("logs: stdout %q stderr %q", stdout, stderr)
	}
	_, _, frames := logText(t, e.rt, "echoer", logstore.Options{Tail: 1, Timestamps: true})
	if len(frames) != 1 {
		t.Fatalf("tail 1 gave %d frames", len(frames))
	}
	ts, line, ok := strings.Cut(string(frames[0].Payload), " ")
	if at, err := time.Parse(time.RFC3339Nano, ts); !ok || err != nil || at.Before(before) || line == "" {
		t.Fatalf("timestamped frame %q: want an RFC3339Nano time of this run, a space and the line", frames[0].Payload)
	}
	e.mu.Lock()
	var states []State
	for _, s := range e.changes {
		if s.Name == "echoer" {
			states = append(states, s.State)
		}
	}
	e.mu.Unlock()
	if strings.Join(stateNames(states), ",") != "created,running,stopped" {
		t.Fatalf("OnChange saw %v, want created, running, stopped", states)
	}
}

func stateNames(ss []State) []string {
	var out []string
	for _, s := range ss {
		out = append(out, string(s))
	}
	return out
}

func TestFailingModuleIsRestartedWithGrowingBackoff(t *testing.T) {
	e := startRuntime(t)
	e.create(t, "crasher", modspec.RestartOnFailure, "echo crash; exit 1")
	if err := e.rt.Start(t.Context(), "crasher"); err != nil {
		t.Fatal(err)
	}
	e.waitFor(t, "crasher", "3 restarts", 15*time.Second, func(s Status) bool { return s.RestartCount >= 3 })
	if err := e.rt.Stop(t.Context(), "crasher", time.Second); err != nil {
		t.Fatalf("stop: %v", err)
	}
	st := e.waitFor(t, "crasher", "stopped", 5*time.Second, func(s Status) bool { return s.State == StateStopped })
	starts := e.runningStarts("crasher")
	if len(starts) < 4 {
		t.Fatalf("saw %d starts, want at least 4", len(starts))
	}
	// Back-off 200 ms, 400 ms, 800 ms (decideRestart's table test pins the
	// arithmetic): each restart waits at least its computed delay. Only
	// lower bounds are asserted; a loaded machine may stretch any gap.
	for i := 1; i < 4; i++ {
		want := 200 * time.Millisecond << (i - 1)
		if gap := starts[i].Sub(starts[i-1]); gap < want {
			t.Fatalf("restart %d came %v after the previous start, before its back-off of %v", i, gap, want)
		}
	}
	e.assertSettled(t, "crasher", "a module stopped by request must stay stopped", func(s Status) bool {
		return s.State == StateStopped && s.RestartCount == st.RestartCount
	})
	stdout, _, _ := logText(t, e.rt, "crasher", logstore.Options{Tail: -1})
	if n := strings.Count(stdout, "crash\n"); n < 4 {
		t.Fatalf("logs hold %d runs' output, want every run (>= 4): %q", n, stdout)
	}
}

func TestOnFailureDoesNotRestartACleanExit(t *testing.T) {
	e := startRuntime(t)
	e.create(t, "clean", modspec.RestartOnFailure, "exit 0")
	if err := e.rt.Start(t.Context(), "clean"); err != nil {
		t.Fatal(err)
	}
	e.waitFor(t, "clean", "stopped", 10*time.Second, func(s Status) bool { return s.State == StateStopped })
	e.assertSettled(t, "clean", "an on-failure module after exit 0 must stay stopped, never restarted", func(s Status) bool {
		return s.State == StateStopped && s.RestartCount == 0
	})
}

func TestNeverPolicyLeavesAFailedModuleFailed(t *testing.T) {
	e := startRuntime(t)
	e.create(t, "once", modspec.RestartNever, "exit 3")
	if err := e.rt.Start(t.Context(), "once"); err != nil {
		t.Fatal(err)
	}
	e.waitFor(t, "once", "failed", 10*time.Second, func(s Status) bool { return s.State == StateFailed })
	e.assertSettled(t, "once", "a never module after exit 3 must stay failed with code 3, not restarted", func(s Status) bool {
		return s.State == StateFailed && s.ExitCode == 3 && s.RestartCount == 0
	})
}

func TestStopStartRemoveLeaveNothingBehind(t *testing.T) {
	e := startRuntime(t)
	e.create(t, "sleeper", modspec.RestartAlways, "trap 'exit 0' TERM; while true; do sleep 0.1; done")
	ctx := t.Context()
	if err := e.rt.Start(ctx, "sleeper"); err != nil {
		t.Fatal(err)
	}
	first := e.status(t, "sleeper")
	pids, err := e.rt.Pids(ctx, "sleeper")
	if err != nil || !slices.Contains(pids, first.Pid) {
		t.Fatalf("pids = %v, %v; want the task's processes, %d among them", pids, err, first.Pid)
	}
	if err := e.rt.Stop(ctx, "sleeper", 10*time.Second); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if st := e.status(t, "sleeper"); st.State != StateStopped || st.ExitCode != 0 {
		t.Fatalf("after stop: %+v, want stopped by its SIGTERM trap with code 0", st)
	}
	if out := e.c.Ctr(t, "-n", e.cfg.Namespace, "tasks", "ls", "-q"); strings.TrimSpace(out) != "" {
		t.Fatalf("tasks left after stop: %q", out)
	}
	if err := e.rt.Start(ctx, "sleeper"); err != nil {
		t.Fatalf("start again: %v", err)
	}
	if st := e.status(t, "sleeper"); st.State != StateRunning || st.Pid == first.Pid || st.Pid == 0 {
		t.Fatalf("after second start: %+v", st)
	}
	if err := e.rt.Remove(ctx, "sleeper"); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if _, err := e.rt.Status(ctx, "sleeper"); !fault.Is(err, fault.NotFound) {
		t.Fatalf("status after remove: %v, want NotFound", err)
	}
	for _, what := range [][]string{{"containers", "ls", "-q"}, {"tasks", "ls", "-q"}, {"snapshots", "--snapshotter", e.rt.Snapshotter(), "ls"}} {
		out := e.c.Ctr(t, append([]string{"-n", e.cfg.Namespace}, what...)...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		for _, l := range lines {
			if strings.Contains(l, "sleeper") {
				t.Fatalf("ctr %s still lists the module: %q", strings.Join(what, " "), out)
			}
		}
	}
	for _, p := range []string{filepath.Join("logs", "sleeper"), filepath.Join("fifo", "sleeper"), filepath.Join("modules", "sleeper.json")} {
		if _, err := os.Stat(filepath.Join(e.cfg.StateDir, p)); !os.IsNotExist(err) {
			t.Fatalf("%s left in the state dir after remove (%v)", p, err)
		}
	}
	if list, _ := e.rt.List(ctx); len(list) != 0 {
		t.Fatalf("list after remove: %+v", list)
	}
}

func TestStopKillsAModuleThatIgnoresSIGTERM(t *testing.T) {
	e := startRuntime(t)
	e.create(t, "stubborn", modspec.RestartAlways, "") // sleep as pid 1: SIGTERM has no effect
	if err := e.rt.Start(t.Context(), "stubborn"); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	if err := e.rt.Stop(t.Context(), "stubborn", 500*time.Millisecond); err != nil {
		t.Fatalf("stop: %v", err)
	}
	took := time.Since(begin)
	st := e.status(t, "stubborn")
	if st.State != StateStopped || st.ExitCode != 137 || took < 500*time.Millisecond || took > 5*time.Second {
		t.Fatalf("after stop: %+v after %v, want stopped by SIGKILL (137) just after the 500 ms grace", st, took)
	}
	e.assertSettled(t, "stubborn", "an always-module stopped by request must stay stopped", func(s Status) bool {
		return s.State == StateStopped && s.RestartCount == 0
	})
}

func TestCreateWithTakenNameIsAlreadyExists(t *testing.T) {
	e := startRuntime(t)
	e.create(t, "twin", modspec.RestartNever, "")
	err := e.rt.Create(t.Context(), CreateRequest{Name: "twin", Image: testImage})
	if !fault.Is(err, fault.AlreadyExists) {
		t.Fatalf("second create: %v, want AlreadyExists", err)
	}
	if list, _ := e.rt.List(t.Context()); len(list) != 1 {
		t.Fatalf("list after a refused create: %+v", list)
	}
}

func TestCreateWithUnknownImageIsNotFoundAndLeavesNoContainer(t *testing.T) {
	e := startRuntime(t)
	err := e.rt.Create(t.Context(), CreateRequest{Name: "ghost", Image: "example.com/nope:1"})
	if !fault.Is(err, fault.NotFound) || !strings.Contains(fault.Message(err), "example.com/nope:1 is not present") {
		t.Fatalf("create from an absent image: %v, want NotFound naming the image", err)
	}
	if out := e.c.Ctr(t, "-n", e.cfg.Namespace, "containers", "ls", "-q"); strings.TrimSpace(out) != "" {
		t.Fatalf("containers left: %q", out)
	}
	if out := e.c.Ctr(t, "-n", e.cfg.Namespace, "snapshots", "--snapshotter", e.rt.Snapshotter(), "ls"); strings.Contains(out, "ghost") {
		t.Fatalf("snapshot left: %q", out)
	}
	if _, err := e.rt.Status(t.Context(), "ghost"); !fault.Is(err, fault.NotFound) {
		t.Fatalf("status of a module never created: %v", err)
	}
}

func TestCreateRejectsBadInput(t *testing.T) {
	e := startRuntime(t)
	for _, req := range []CreateRequest{
		{Name: "bad/name", Image: testImage},
		{Name: "nopolicy", Image: testImage, Restart: "sometimes"},
		{Name: "tinylog", Image: testImage, LogMaxBytes: 100},
		{Name: "ourlabel", Image: testImage, Labels: map[string]string{"org.edgev2.owner": "me"}},
		{Name: "noimage"},
	} {
		if err := e.rt.Create(t.Context(), req); !fault.Is(err, fault.InvalidArgs) {
			t.Errorf("create %+v: %v, want InvalidArgs", req, err)
		}
	}
	if out := e.c.Ctr(t, "-n", e.cfg.Namespace, "containers", "ls", "-q"); strings.TrimSpace(out) != "" {
		t.Fatalf("containers left: %q", out)
	}
}

const tickScript = "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done"

func TestReopenedRuntimeAdoptsRunningModule(t *testing.T) {
	e := startRuntime(t)
	e.create(t, "ticker", modspec.RestartAlways, tickScript)
	if err := e.rt.Start(t.Context(), "ticker"); err != nil {
		t.Fatal(err)
	}
	before := e.status(t, "ticker")
	time.Sleep(300 * time.Millisecond) // the scenario, not a wait: a few ticks logged while open
	if err := e.rt.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	time.Sleep(500 * time.Millisecond) // ticks pile up in the FIFO meanwhile
	if err := syscall.Kill(int(before.Pid), 0); err != nil {
		t.Fatalf("module died when the runtime closed: %v", err)
	}
	e.open(t)
	after := e.status(t, "ticker")
	if after.State != StateRunning || after.Pid != before.Pid || !after.StartedAt.Equal(before.StartedAt) {
		t.Fatalf("after reopen: %+v, want the same running task as %+v", after, before)
	}
	assertTicksContiguous(t, waitTicks(t, e.rt, "ticker", 10), 10)

	// Supervision resumed: a crash of the adopted task is restarted.
	if err := syscall.Kill(int(before.Pid), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st := e.waitFor(t, "ticker", "restart after a kill", 10*time.Second, func(s Status) bool {
		return s.State == StateRunning && s.Pid != before.Pid && s.RestartCount == 1
	})
	if st.ExitCode != 137 {
		t.Fatalf("exit code of the killed task = %d, want 137", st.ExitCode)
	}
}

// waitTicks returns the module's stdout once it holds n lines (or after
// 20 s): a loaded machine may tick slower than the script asks.
func waitTicks(t *testing.T, rt *Runtime, name string, n int) string {
	t.Helper()
	var stdout string
	testenv.WaitFor(20*time.Second, func() bool {
		stdout, _, _ = logText(t, rt, name, logstore.Options{Tail: -1})
		return strings.Count(stdout, "\n") >= n
	})
	return stdout
}

// assertTicksContiguous checks the log holds "tick 0".."tick n" or more with
// none lost or doubled (across a runtime restart, nothing may be).
func assertTicksContiguous(t *testing.T, stdout string, atLeast int) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) < atLeast {
		t.Fatalf("only %d log lines: %q", len(lines), stdout)
	}
	for i, l := range lines {
		if want := "tick " + strconv.Itoa(i); l != want {
			t.Fatalf("log line %d = %q, want %q (lines lost or doubled): %q", i, l, want, stdout)
		}
	}
}

func TestModuleSurvivesContainerdRestartAndRuntimeReconnects(t *testing.T) {
	e := startRuntime(t)
	e.create(t, "survivor", modspec.RestartAlways, tickScript)
	if err := e.rt.Start(t.Context(), "survivor"); err != nil {
		t.Fatal(err)
	}
	before := e.status(t, "survivor")
	e.c.Restart(t)
	if err := syscall.Kill(int(before.Pid), 0); err != nil {
		t.Fatalf("module died with containerd: %v", err)
	}
	// The runtime is back on the event stream (it says so once it has
	// subscribed again and resynchronised) before the crash it must restart.
	testenv.Eventually(t, 20*time.Second, func() bool {
		return strings.Contains(e.log.String(), "reconnected to containerd")
	}, "the runtime did not reach containerd again; its log:\n%s", &e.log)
	if err := syscall.Kill(int(before.Pid), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e.waitFor(t, "survivor", "restart after a kill", 15*time.Second, func(s Status) bool {
		return s.State == StateRunning && s.Pid != before.Pid && s.RestartCount == 1
	})
	stdout, _, _ := logText(t, e.rt, "survivor", logstore.Options{Tail: -1})
	if !strings.HasPrefix(stdout, "tick 0\n") {
		t.Fatalf("logs across the containerd restart: %q", stdout)
	}
}

func TestFollowStreamsNewLinesUntilModuleStops(t *testing.T) {
	e := startRuntime(t)
	e.create(t, "follow", modspec.RestartNever, tickScript)
	if err := e.rt.Start(t.Context(), "follow"); err != nil {
		t.Fatal(err)
	}
	rc, err := e.rt.Logs("follow", logstore.Options{Tail: 0, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	done := make(chan []logstore.Frame)
	go func() {
		frames, _ := logstore.ParseFrames(rc)
		done <- frames
	}()
	// Stop once the module has ticked a few times (read from the log
	// store, not from the follower under test).
	if out := waitTicks(t, e.rt, "follow", 3); strings.Count(out, "\n") < 3 {
		t.Fatalf("the module did not tick: %q", out)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := e.rt.Stop(ctx, "follow", 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	select {
	case frames := <-done:
		if len(frames) < 3 {
			t.Fatalf("follow gave %d frames while the module ticked", len(frames))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follow did not end when the module stopped")
	}
}

func TestChattyModuleDoesNotFillTheDisk(t *testing.T) {
	e := startRuntime(t)
	const maxBytes, files = 16 << 10, 3
	err := e.rt.Create(t.Context(), CreateRequest{
		Name: "chatty", Image: testImage, Restart: modspec.RestartNever, LogMaxBytes: maxBytes, LogFiles: files,
		Opts: []oci.SpecOpts{oci.WithProcessArgs("sh", "-c", "i=0; while [ $i -lt 20000 ]; do echo chatter line $i; i=$((i+1)); done; echo last line")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.rt.Start(t.Context(), "chatty"); err != nil {
		t.Fatal(err)
	}
	e.waitFor(t, "chatty", "stopped", 60*time.Second, func(s Status) bool { return s.State == StateStopped })
	total, n, err := logstore.DiskUsage(filepath.Join(e.cfg.StateDir, "logs", "chatty"))
	if err != nil {
		t.Fatal(err)
	}
	if total > maxBytes*files || n > files {
		t.Fatalf("logs use %d bytes in %d files after ~400 KB of output; cap is %d bytes", total, n, maxBytes*files)
	}
	stdout, _, _ := logText(t, e.rt, "chatty", logstore.Options{Tail: 2})
	if stdout != "chatter line 19999\nlast line\n" {
		t.Fatalf("tail 2 = %q", stdout)
	}
}

// A container made before deployments were refused the labels containerd
// acts on keeps none of them once the runtime adopts it: containerd's
// restart monitor would run its task past the start check, and the log
// program its labels name as root.
func TestReopenedRuntimeDropsTheLabelsContainerdActsOn(t *testing.T) {
	e := startRuntime(t)
	e.create(t, "labelled", modspec.RestartNever, "sleep 600")
	if err := e.rt.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	// "stopped" and a log path that is never used: containerd's monitor
	// has nothing to start meanwhile.
	e.c.Ctr(t, "-n", e.cfg.Namespace, "containers", "label", "labelled",
		"containerd.io/restart.status=stopped", "containerd.io/restart.logpath=/nonexistent/edgev2", "team=sensors")
	e.open(t)
	info := e.c.Ctr(t, "-n", e.cfg.Namespace, "containers", "info", "labelled")
	if strings.Contains(info, "containerd.io/restart") || !strings.Contains(info, `"team": "sensors"`) || !strings.Contains(info, labelOwner) {
		t.Fatalf("labels of the adopted container: %s; want containerd's dropped and the others kept", info)
	}
	if _, err := e.rt.Status(t.Context(), "labelled"); err != nil {
		t.Fatalf("the module after the labels were dropped: %v", err)
	}
}
