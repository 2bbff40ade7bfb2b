package modrt

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/modrt/ctrd"
)

// fakeOwnerRuntime: modules with a task pid and the pids containerd lists.
type fakeOwnerRuntime map[string]struct {
	pid  uint32
	pids []uint32
	err  error // from Pids: containerd not answering
}

func (f fakeOwnerRuntime) Status(_ context.Context, name string) (ctrd.Status, error) {
	m, ok := f[name]
	if !ok {
		return ctrd.Status{}, fault.New(fault.NotFound, "no module %s", name)
	}
	return ctrd.Status{Name: name, Pid: m.pid}, nil
}
func (f fakeOwnerRuntime) List(ctx context.Context) ([]ctrd.Status, error) {
	var out []ctrd.Status
	for name := range f {
		st, _ := f.Status(ctx, name)
		out = append(out, st)
	}
	return out, nil
}
func (f fakeOwnerRuntime) Pids(_ context.Context, name string) ([]uint32, error) {
	return f[name].pids, f[name].err
}

// startInNewPidNS runs a shell as pid 1 of a new pid namespace with one
// child, as a container task would, and returns (task pid, child pid) as
// the host sees them.
func startInNewPidNS(t *testing.T) (int, int) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", "sleep 300 & wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start a process in a new pid namespace: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	task := cmd.Process.Pid
	var child int
	testenv.Eventually(t, 10*time.Second, func() bool {
		data, _ := os.ReadFile("/proc/" + strconv.Itoa(task) + "/task/" + strconv.Itoa(task) + "/children")
		f := strings.Fields(string(data))
		if len(f) > 0 {
			child, _ = strconv.Atoi(f[0])
		}
		return len(f) > 0
	}, "the task's child did not appear")
	return task, child
}

// TestPidOwnersOneRuleForBothAPIs: a process in a module's pid namespace is
// the module's; a host process is a module's only when containerd lists it
// in the module's task (host pid namespace); nothing else is anyone's.
func TestPidOwnersOneRuleForBothAPIs(t *testing.T) {
	testenv.RequireRoot(t)
	ctx := context.Background()
	task, child := startInNewPidNS(t)
	hostMod := exec.Command("sleep", "300")
	if err := hostMod.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hostMod.Process.Kill(); hostMod.Wait() })
	stranger := exec.Command("sleep", "300")
	if err := stranger.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stranger.Process.Kill(); stranger.Wait() })
	rt := fakeOwnerRuntime{
		"edgeAgent": {pid: uint32(task), pids: []uint32{uint32(task)}}, // the child is not listed: the namespace decides
		"hostpid":   {pid: uint32(hostMod.Process.Pid), pids: []uint32{uint32(hostMod.Process.Pid)}},
		"starting":  {pid: 0, pids: nil},
	}
	o := newPidOwners(rt)
	o.settle = 0
	tests := []struct {
		name   string
		module string
		pid    int
		owns   bool
	}{
		{"the task itself", "edgeAgent", task, true},
		{"a child in the task's pid namespace", "edgeAgent", child, true},
		{"the child, asked as another module", "hostpid", child, false},
		{"a host-pid-namespace module's listed process", "hostpid", hostMod.Process.Pid, true},
		{"another host process is not the host-pid module's", "hostpid", stranger.Process.Pid, false},
		{"modrtd itself (the host's pid namespace) is not a namespaced module's", "edgeAgent", os.Getpid(), false},
		{"a module without a task owns nothing", "starting", child, false},
		{"an unknown module owns nothing", "ghost", child, false},
		{"pid 0", "edgeAgent", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := o.Owns(ctx, tt.module, int32(tt.pid)); got != tt.owns {
				t.Fatalf("Owns(%s, %d) = %v, want %v", tt.module, tt.pid, got, tt.owns)
			}
			// ModuleOf agrees with Owns.
			m, err := o.ModuleOf(ctx, int32(tt.pid))
			if err != nil {
				t.Fatalf("ModuleOf(%d): %v", tt.pid, err)
			}
			if tt.owns && m != tt.module {
				t.Fatalf("ModuleOf(%d) = %q; want %s", tt.pid, m, tt.module)
			}
			if !tt.owns && m == tt.module {
				t.Fatalf("ModuleOf(%d) = %s, which Owns denies", tt.pid, m)
			}
		})
	}
	if m, err := o.ModuleOf(ctx, int32(stranger.Process.Pid)); m != "" || err != nil {
		t.Fatalf("ModuleOf(a host process of no module) = %q, %v", m, err)
	}

	// containerd does not answer for the host-pid module's processes: a
	// host process may be that module's, so ModuleOf cannot say it is
	// no module's (the management API would take it for a host tool of
	// root). A process in a module's own pid namespace is still known.
	down := fakeOwnerRuntime{
		"edgeAgent": {pid: uint32(task)},
		"hostpid":   {pid: uint32(hostMod.Process.Pid), err: errors.New("containerd: connection refused")},
	}
	od := newPidOwners(down)
	od.settle = 0
	if m, err := od.ModuleOf(ctx, int32(stranger.Process.Pid)); m != "" || err == nil {
		t.Fatalf("ModuleOf(a host process) with containerd down = %q, %v; want an error (cannot tell)", m, err)
	}
	if m, err := od.ModuleOf(ctx, int32(child)); m != "edgeAgent" || err != nil {
		t.Fatalf("ModuleOf(the agent's child) with containerd down = %q, %v; want edgeAgent", m, err)
	}
}

// TestPidOwnersWaitsForATaskThatIsStarting: a module calling the instant
// its task starts, before the runtime records its pid, is recognised once
// the runtime has it, within the settle time.
func TestPidOwnersWaitsForATaskThatIsStarting(t *testing.T) {
	testenv.RequireRoot(t)
	task, child := startInNewPidNS(t)
	rt := &settlingRuntime{after: time.Now().Add(200 * time.Millisecond), pid: uint32(task)}
	o := newPidOwners(rt)
	if !o.Owns(context.Background(), "sensor", int32(child)) {
		t.Fatal("Owns refused a process of a task recorded 200 ms after the call")
	}
}

type settlingRuntime struct {
	after time.Time
	pid   uint32
}

func (s *settlingRuntime) Status(_ context.Context, name string) (ctrd.Status, error) {
	if time.Now().Before(s.after) {
		return ctrd.Status{Name: name}, nil
	}
	return ctrd.Status{Name: name, Pid: s.pid}, nil
}
func (s *settlingRuntime) List(ctx context.Context) ([]ctrd.Status, error) {
	st, _ := s.Status(ctx, "sensor")
	return []ctrd.Status{st}, nil
}
func (s *settlingRuntime) Pids(context.Context, string) ([]uint32, error) { return nil, nil }

// countingRuntime counts how often the rule asked for a module's status.
type countingRuntime struct {
	fakeOwnerRuntime
	statuses int
}

func (c *countingRuntime) Status(ctx context.Context, name string) (ctrd.Status, error) {
	c.statuses++
	return c.fakeOwnerRuntime.Status(ctx, name)
}

// TestPidOwnersRefusesAForeignCallerAtOnce: a process of another module (a
// pid namespace of its own) or of the host is refused for a module whose
// task runs, in one pass of the rule: looking again cannot change it. The
// module's own processes are still its own.
func TestPidOwnersRefusesAForeignCallerAtOnce(t *testing.T) {
	testenv.RequireRoot(t)
	ctx := context.Background()
	task, child := startInNewPidNS(t)
	_, foreign := startInNewPidNS(t)
	stranger := exec.Command("sleep", "300")
	if err := stranger.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stranger.Process.Kill(); stranger.Wait() })
	tests := []struct {
		name string
		pid  int
		owns bool
	}{
		{"the module's own child", child, true},
		{"a process of another pid namespace", foreign, false},
		{"a host process", stranger.Process.Pid, false},
		{"modrtd itself", os.Getpid(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := &countingRuntime{fakeOwnerRuntime: fakeOwnerRuntime{"sensor": {pid: uint32(task), pids: []uint32{uint32(task)}}}}
			o := newPidOwners(rt) // the full settle time
			if got := o.Owns(ctx, "sensor", int32(tt.pid)); got != tt.owns {
				t.Fatalf("Owns = %v, want %v", got, tt.owns)
			}
			if rt.statuses != 1 {
				t.Fatalf("the rule looked %d times; a running task's answer is final after one", rt.statuses)
			}
		})
	}
}

// TestPidOwnersLooksAgainWhileTheTaskIsNotSettled: with no task recorded,
// or a recorded one that is gone (a restart in flight), a refusal is not
// final: the rule looks again until the settle time ends.
func TestPidOwnersLooksAgainWhileTheTaskIsNotSettled(t *testing.T) {
	testenv.RequireRoot(t)
	_, foreign := startInNewPidNS(t)
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	for name, pid := range map[string]uint32{"no task recorded": 0, "the recorded task is gone": uint32(gone.Process.Pid)} {
		t.Run(name, func(t *testing.T) {
			rt := &countingRuntime{fakeOwnerRuntime: fakeOwnerRuntime{"sensor": {pid: pid}}}
			o := newPidOwners(rt)
			o.settle = 300 * time.Millisecond
			if o.Owns(context.Background(), "sensor", int32(foreign)) {
				t.Fatal("Owns accepted a process of another pid namespace")
			}
			if rt.statuses < 2 {
				t.Fatalf("the rule looked %d times while the module's task was not settled; want it to look again", rt.statuses)
			}
		})
	}
}

// TestPidOwnersReadsItsOwnPidNamespaceOnce: modrtd's own pid namespace is
// read once (it cannot change), not per request.
func TestPidOwnersReadsItsOwnPidNamespaceOnce(t *testing.T) {
	proc := t.TempDir()
	link := func(pid, ns string) {
		t.Helper()
		d := filepath.Join(proc, pid, "ns")
		os.MkdirAll(d, 0o755)
		os.Remove(filepath.Join(d, "pid"))
		if err := os.Symlink(ns, filepath.Join(d, "pid")); err != nil {
			t.Fatal(err)
		}
	}
	link("self", "pid:[1]")
	link("100", "pid:[2]") // the task
	link("101", "pid:[2]") // its child
	o := newPidOwners(fakeOwnerRuntime{"sensor": {pid: 100}})
	o.procFS, o.settle = proc, 0
	if !o.Owns(context.Background(), "sensor", 101) {
		t.Fatal("a child in the task's pid namespace was refused")
	}
	// Were it read again, the task's namespace would now be the host's and
	// the child no module's.
	link("self", "pid:[2]")
	if !o.Owns(context.Background(), "sensor", 101) {
		t.Fatal("modrtd's own pid namespace was read again")
	}
}
