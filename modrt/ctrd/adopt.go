package ctrd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/errdefs"

	"github.com/edgev2/edgev2/modrt/modspec"
)

// sync makes the in-memory modules match containerd: it adds containers
// of ours it does not know, drops modules whose container is gone, and
// reconciles each one with its task (adopting running tasks, recording
// exits that happened while it was not watching).
func (r *Runtime) sync(ctx context.Context) error {
	r.createMu.Lock()
	defer r.createMu.Unlock()
	cs, err := r.client.Containers(ctx, fmt.Sprintf("labels.%q==%s", labelOwner, ownerValue))
	if err != nil {
		return classify(err, "list containers")
	}
	seen := map[string]bool{}
	for _, c := range cs {
		seen[c.ID()] = true
		m, err := r.module(c.ID())
		if err != nil {
			labels, lerr := c.Labels(ctx)
			if lerr != nil {
				return classify(lerr, "read labels of %q", c.ID())
			}
			if err := r.dropContainerdLabels(ctx, c, labels); err != nil {
				return err
			}
			if m, err = r.newModule(ctx, c, labels); err != nil {
				r.log.Error("module cannot be adopted", "module", c.ID(), "err", err)
				continue
			}
			r.mu.Lock()
			r.modules[m.name] = m
			r.mu.Unlock()
		}
		if err := r.reconcile(ctx, m); err != nil {
			if isUnavailable(err) {
				return err // containerd itself: retried as a whole
			}
			// One module's trouble never stops the runtime (modrtd would
			// crash-loop over it): log it and go on with the others.
			r.log.Error("module could not be reconciled with its task; leaving it as it is", "module", m.name, "err", err)
		}
	}
	r.mu.Lock()
	var gone []*module
	for name, m := range r.modules {
		if !seen[name] {
			gone = append(gone, m)
			delete(r.modules, name)
		}
	}
	r.mu.Unlock()
	for _, m := range gone {
		r.log.Warn("module's container was deleted behind our back", "module", m.name)
		r.forget(m)
	}
	r.recoverNet(ctx)
	return nil
}

// dropContainerdLabels removes from container c of ours the labels
// containerd acts on (its restart monitor runs the task, and the log
// program containerd.io/restart.loguri names, as root): a deployment could
// set them before createOptions.Labels refused them.
func (r *Runtime) dropContainerdLabels(ctx context.Context, c containerd.Container, labels map[string]string) error {
	kept := make(map[string]string, len(labels))
	var dropped []string
	for k, v := range labels {
		if modspec.ContainerdLabel(k) {
			dropped = append(dropped, k)
			continue
		}
		kept[k] = v
	}
	if len(dropped) == 0 {
		return nil
	}
	if _, err := r.client.ContainerService().Update(ctx, containers.Container{ID: c.ID(), Labels: kept}, "labels"); err != nil {
		return classify(err, "drop containerd's labels from %q", c.ID())
	}
	for _, k := range dropped {
		delete(labels, k)
	}
	r.log.Warn("dropped labels containerd acts on from a module's container", "module", c.ID(), "labels", dropped)
	return nil
}

// reconcile brings m in line with its task in containerd.
func (r *Runtime) reconcile(ctx context.Context, m *module) error {
	m.op.Lock()
	defer m.op.Unlock()
	task, err := m.container.Task(ctx, nil)
	if err != nil && !errdefs.IsNotFound(err) {
		return classify(err, "load task of %q", m.name)
	}
	var st containerd.Status
	if err == nil {
		if st, err = task.Status(ctx); errdefs.IsNotFound(err) {
			// Deleted between the two calls (an exit being cleaned up).
			task = nil
		} else if err != nil {
			return classify(err, "status of task %q", m.name)
		}
		if task != nil && st.Status == containerd.Created {
			// A crash between NewTask and Start: nothing ran.
			if _, err := task.Delete(ctx); err != nil {
				r.log.Warn("delete unstarted task", "module", m.name, "err", err)
			}
			task = nil
		}
	} else {
		task = nil
	}

	m.mu.Lock()
	switch {
	case task == nil:
		switch {
		case m.pid != 0 || m.st.State == StateRunning:
			// It ran and its task is gone (a reboot, or someone deleted it).
			m.task, m.io, m.pid = nil, nil, 0
			r.exitedLocked(m, -1)
		case m.st.State == StateRestarting && !m.timerArmed:
			r.scheduleRestartLocked(m, r.cfg.BackoffBase)
		}
		m.mu.Unlock()
		r.detachNet(ctx, m)
		return nil
	case task.Pid() == m.pid && m.task != nil:
		m.mu.Unlock()
		if st.Status == containerd.Stopped {
			r.finishTask(ctx, m, task.Pid(), int(st.ExitStatus))
		}
		return nil
	}
	stale := m.io // of a task replaced behind our back
	m.task, m.io, m.pid = nil, nil, 0
	m.mu.Unlock()
	if stale != nil {
		stale.Close()
	}

	// A task we do not follow yet: adopt it.
	pid := task.Pid()
	var tio *taskIO
	if st.Status == containerd.Stopped {
		drainFifos(cio.Config{Stdout: filepath.Join(r.fifoDir(m.name), "stdout"), Stderr: filepath.Join(r.fifoDir(m.name), "stderr")}, m.logs)
	} else {
		var aerr error
		task, err = m.container.Task(ctx, func(fs *cio.FIFOSet) (cio.IO, error) {
			if aerr = r.checkFifos(m.name, fs.Config); aerr != nil {
				return nil, aerr
			}
			tio, aerr = attachTaskIO(fs.Config, m.logs, false)
			return tio, aerr
		})
		if err != nil && aerr == nil {
			return classify(err, "attach to task of %q", m.name)
		}
		if err != nil {
			// An orphan: its output cannot be re-attached (the fifos are
			// gone, e.g. after a purge and reinstall wiped the state
			// directory). Its output would block for ever once the pipe
			// fills, so it is stopped and supervision starts it afresh.
			r.log.Warn("running module's output cannot be re-attached; stopping it so supervision can start it afresh",
				"module", m.name, "pid", pid, "err", aerr)
			code, kerr := r.stopOrphan(ctx, m, defaultStopTimeout)
			if kerr != nil {
				return kerr
			}
			r.detachNet(ctx, m)
			m.mu.Lock()
			m.task, m.io, m.pid = nil, nil, 0
			if m.st.StartedAt.IsZero() {
				m.st.StartedAt = r.cfg.Now()
			}
			r.exitedLocked(m, code)
			m.mu.Unlock()
			return nil
		}
	}
	if st.Status != containerd.Stopped {
		r.adoptNet(ctx, m, pid)
	}
	m.mu.Lock()
	m.task, m.io, m.pid = task, tio, pid
	if st.Status != containerd.Stopped {
		m.st.State = StateRunning
		if m.st.StartedAt.IsZero() {
			m.st.StartedAt = r.cfg.Now()
		}
		r.cancelRestartLocked(m)
		r.log.Info("adopted running module", "module", m.name, "pid", pid)
		r.changedLocked(m)
	}
	m.mu.Unlock()
	if st.Status == containerd.Stopped {
		r.finishTask(ctx, m, pid, int(st.ExitStatus))
	}
	return nil
}

// checkFifos accepts the output fifos containerd recorded for name's task
// only if they are ours: the two fifos in name's fifo directory, and
// fifos, not whatever else now sits at those paths (modrtd opens them as
// root).
func (r *Runtime) checkFifos(name string, c cio.Config) error {
	dir := r.fifoDir(name)
	if c.Stdin != "" || c.Stdout != filepath.Join(dir, "stdout") || c.Stderr != filepath.Join(dir, "stderr") {
		return fmt.Errorf("task's output goes to %q and %q, not to modrtd's fifos in %s", c.Stdout, c.Stderr, dir)
	}
	for _, p := range []string{c.Stdout, c.Stderr} {
		fi, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("fifo of the task's output: %w", err)
		}
		if fi.Mode().Type() != os.ModeNamedPipe {
			return fmt.Errorf("%s is not a fifo (%v)", p, fi.Mode().Type())
		}
	}
	return nil
}

// stopOrphan stops the task of m that cannot be adopted: SIGTERM, SIGKILL
// to all its processes after timeout, then deletes the task. It returns
// the exit code. m.op is held.
func (r *Runtime) stopOrphan(ctx context.Context, m *module, timeout time.Duration) (int, error) {
	task, err := m.container.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return -1, nil
	}
	if err != nil {
		return 0, classify(err, "load task of %q", m.name)
	}
	waitC, err := task.Wait(ctx)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return -1, nil
		}
		return 0, classify(err, "stop module %q", m.name)
	}
	es, err := r.terminate(ctx, m.name, task, waitC, timeout)
	if err != nil {
		return 0, err
	}
	code := int(es.ExitCode())
	if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
		return 0, classify(err, "delete task of %q", m.name)
	}
	r.log.Info("stopped the module's orphaned task", "module", m.name, "exit_code", code)
	return code, nil
}
