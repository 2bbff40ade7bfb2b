package modrt

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/edgev2/edgev2/modrt/ctrd"
)

// ownerRuntime is what PidOwners needs of the runtime.
type ownerRuntime interface {
	Status(ctx context.Context, name string) (ctrd.Status, error)
	List(ctx context.Context) ([]ctrd.Status, error)
	Pids(ctx context.Context, name string) ([]uint32, error)
}

// PidOwners decides which module a process belongs to, for the workload
// sockets and the management API alike. One rule: pid is module M's when it
// lives in the pid namespace of M's task and that namespace is not the
// host's (two readlinks, no containerd round trip), or when containerd lists
// it among the processes of M's task (modules that share the host's pid
// namespace, and the instant a task starts before its pid is recorded).
type PidOwners struct {
	rt     ownerRuntime
	procFS string // "/proc"; tests may point elsewhere
	// settle is how long Owns keeps looking before it refuses: a module
	// may call in the instant its task starts, before the runtime has
	// recorded it.
	settle time.Duration

	hostOnce sync.Once
	hostNS   string // modrtd's own pid namespace, read once: it cannot change
	hostErr  error
}

// NewPidOwners answers from rt's view of module tasks.
func NewPidOwners(rt Backend) *PidOwners { return newPidOwners(rt) }

func newPidOwners(rt ownerRuntime) *PidOwners {
	return &PidOwners{rt: rt, procFS: "/proc", settle: time.Second}
}

// pidNS is pid's pid namespace; pid 0 is modrtd's own, read once (a
// process's pid namespace is fixed for its life).
func (o *PidOwners) pidNS(pid int) (string, error) {
	if pid == 0 {
		o.hostOnce.Do(func() { o.hostNS, o.hostErr = os.Readlink(o.procFS + "/self/ns/pid") })
		return o.hostNS, o.hostErr
	}
	return os.Readlink(fmt.Sprintf("%s/%d/ns/pid", o.procFS, pid))
}

// Owns reports whether pid is a process of module. While the module's task
// is not settled (no task recorded yet, or the recorded one is gone: a
// start or restart in flight) it looks again for up to a second before it
// says no; a refusal against a running, recorded task is given at once,
// as looking again cannot change it.
func (o *PidOwners) Owns(ctx context.Context, module string, pid int32) bool {
	deadline := time.Now().Add(o.settle)
	for {
		if pid <= 0 {
			return false
		}
		owns, settled := o.ownsOnce(ctx, module, pid)
		if owns {
			return true
		}
		if settled || !time.Now().Before(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ownsOnce applies the rule once. settled says a refusal is final: the
// module's task is recorded and still runs, so no start in flight can make
// pid its process later; and an unknown module or a caller already gone
// stay so.
func (o *PidOwners) ownsOnce(ctx context.Context, module string, pid int32) (owns, settled bool) {
	st, err := o.rt.Status(ctx, module)
	if err != nil {
		return false, false
	}
	hostNS, err := o.pidNS(0)
	if err != nil {
		return false, false
	}
	peerNS, err := o.pidNS(int(pid))
	if err != nil {
		return false, true // gone, or not visible from here
	}
	if o.owns(ctx, st, pid, peerNS, hostNS) {
		return true, true
	}
	return false, o.taskRuns(st)
}

// taskRuns reports whether st's recorded task still runs (its process can
// be seen).
func (o *PidOwners) taskRuns(st ctrd.Status) bool {
	if st.Pid == 0 {
		return false
	}
	_, err := o.pidNS(int(st.Pid))
	return err == nil
}

// owns applies the rule to one module's status.
func (o *PidOwners) owns(ctx context.Context, st ctrd.Status, pid int32, peerNS, hostNS string) bool {
	if o.inTaskNS(st, peerNS, hostNS) {
		return true
	}
	listed, err := o.listed(ctx, st.Name, pid)
	return err == nil && listed
}

// inTaskNS is the fast half of the rule: peerNS is the (non-host) pid
// namespace of the module's task.
func (o *PidOwners) inTaskNS(st ctrd.Status, peerNS, hostNS string) bool {
	if st.Pid == 0 {
		return false
	}
	taskNS, err := o.pidNS(int(st.Pid))
	return err == nil && taskNS != hostNS && peerNS == taskNS
}

// listed is the other half: containerd lists pid in the module's task.
// An error is containerd not answering: whether pid is the module's is
// then unknown.
func (o *PidOwners) listed(ctx context.Context, module string, pid int32) (bool, error) {
	pids, err := o.rt.Pids(ctx, module)
	if err != nil {
		return false, err
	}
	for _, p := range pids {
		if int32(p) == pid {
			return true, nil
		}
	}
	return false, nil
}

// ModuleOf names the module pid belongs to, by the same rule as Owns: ""
// for a process of no module (or one already gone). A process in a pid
// namespace other than the host's is a container's: if no module is found
// at once it is looked up again for up to a second, like Owns, as a module
// may call in the instant its task starts (a host process is answered in
// one pass). An error says it cannot be told (containerd does not answer
// for a module's processes): a caller deciding authority must then refuse,
// as the process may be a module's that shares the host's pid namespace.
func (o *PidOwners) ModuleOf(ctx context.Context, pid int32) (string, error) {
	if pid <= 0 {
		return "", nil
	}
	hostNS, err := o.pidNS(0)
	if err != nil {
		return "", fmt.Errorf("read modrtd's pid namespace: %w", err)
	}
	peerNS, err := o.pidNS(int(pid))
	if err != nil {
		return "", nil // gone, or not visible from here
	}
	deadline := time.Now().Add(o.settle)
	for {
		m, err := o.moduleOfOnce(ctx, pid, peerNS, hostNS)
		if m != "" || peerNS == hostNS || !time.Now().Before(deadline) {
			return m, err
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (o *PidOwners) moduleOfOnce(ctx context.Context, pid int32, peerNS, hostNS string) (string, error) {
	sts, err := o.rt.List(ctx)
	if err != nil {
		return "", err
	}
	// Namespaces first (no containerd round trips), then process lists.
	for _, st := range sts {
		if o.inTaskNS(st, peerNS, hostNS) {
			return st.Name, nil
		}
	}
	var unknown error
	for _, st := range sts {
		listed, err := o.listed(ctx, st.Name, pid)
		if listed {
			return st.Name, nil
		}
		if err != nil && unknown == nil {
			unknown = fmt.Errorf("list the processes of module %s: %w", st.Name, err)
		}
	}
	return "", unknown
}
