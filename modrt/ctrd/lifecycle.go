package ctrd

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/identifiers"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	"github.com/distribution/reference"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/modrt/logstore"
	"github.com/edgev2/edgev2/modrt/modspec"
)

// Create creates module req.Name from req.Image, which must be present
// (pulled or imported). It does not start it.
func (r *Runtime) Create(ctx context.Context, req CreateRequest) (err error) {
	ctx = namespaces.WithNamespace(ctx, r.cfg.Namespace)
	if err := identifiers.Validate(req.Name); err != nil {
		return fault.Wrap(fault.InvalidArgs, err, "bad module name %q: use letters, digits, '.', '_' and '-' (at most 76)", req.Name)
	}
	if req.Image == "" {
		return fault.New(fault.InvalidArgs, "module %q: no image given", req.Name)
	}
	if req.Restart == "" {
		req.Restart = modspec.RestartAlways
	}
	if !req.Restart.Valid() {
		return fault.New(fault.InvalidArgs, "module %q: unknown restart policy %q (never, on-failure, always)", req.Name, req.Restart)
	}
	if req.LogMaxBytes == 0 {
		req.LogMaxBytes = defaultLogMaxBytes
	}
	if req.LogMaxBytes < minLogMaxBytes {
		return fault.New(fault.InvalidArgs, "module %q: log size %d is below the minimum of %d bytes", req.Name, req.LogMaxBytes, minLogMaxBytes)
	}
	if req.LogFiles == 0 {
		req.LogFiles = defaultLogFiles
	}
	if req.LogFiles < 1 {
		return fault.New(fault.InvalidArgs, "module %q: log file count %d must be at least 1", req.Name, req.LogFiles)
	}
	labels := map[string]string{}
	for k, v := range req.Labels {
		if strings.HasPrefix(k, labelPrefix) {
			return fault.New(fault.InvalidArgs, "module %q: label %q uses the reserved prefix %s", req.Name, k, labelPrefix)
		}
		if modspec.ContainerdLabel(k) {
			return fault.New(fault.InvalidArgs, "module %q: label %q belongs to containerd, which acts on it", req.Name, k)
		}
		labels[k] = v
	}
	labels[labelOwner] = ownerValue
	labels[labelImage] = req.Image
	labels[labelRestart] = string(req.Restart)
	labels[labelLogMaxBytes] = strconv.FormatInt(req.LogMaxBytes, 10)
	labels[labelLogFiles] = strconv.Itoa(req.LogFiles)
	if err := req.setNetworkLabels(labels); err != nil {
		return err
	}

	r.createMu.Lock()
	defer r.createMu.Unlock()
	if _, err := r.module(req.Name); err == nil {
		return fault.New(fault.AlreadyExists, "module %q already exists", req.Name)
	}
	if _, err := r.client.LoadContainer(ctx, req.Name); err == nil {
		return fault.New(fault.AlreadyExists, "a container named %q already exists in namespace %s", req.Name, r.cfg.Namespace)
	} else if !errdefs.IsNotFound(err) {
		return classify(err, "look up container %q", req.Name)
	}
	img, err := r.image(ctx, req.Image)
	if err != nil {
		return err
	}
	if ok, err := img.IsUnpacked(ctx, r.snapshotter); err != nil || !ok {
		if err := img.Unpack(ctx, r.snapshotter); err != nil {
			return classify(err, "unpack image %s", req.Image)
		}
	}
	snapshots := r.client.SnapshotService(r.snapshotter)
	// A snapshot under this name without a container is what a crash
	// in an earlier Create left.
	if err := snapshots.Remove(ctx, req.Name); err != nil && !errdefs.IsNotFound(err) {
		r.log.Warn("remove stale snapshot", "module", req.Name, "err", err)
	}
	defer func() {
		if err != nil {
			if rerr := snapshots.Remove(ctx, req.Name); rerr != nil && !errdefs.IsNotFound(rerr) {
				r.log.Warn("remove snapshot of failed create", "module", req.Name, "err", rerr)
			}
		}
	}()
	specOpts := append([]oci.SpecOpts{oci.WithImageConfig(img)}, req.Opts...)
	c, err := r.client.NewContainer(ctx, req.Name,
		containerd.WithImage(img),
		containerd.WithSnapshotter(r.snapshotter),
		containerd.WithNewSnapshot(req.Name, img),
		containerd.WithRuntime(runcRuntime, nil),
		containerd.WithNewSpec(specOpts...),
		containerd.WithContainerLabels(labels),
	)
	if err != nil {
		if errdefs.IsAlreadyExists(err) {
			return fault.Wrap(fault.AlreadyExists, err, "module %q already exists", req.Name)
		}
		if isUnavailable(err) {
			return classify(err, "create module %q", req.Name)
		}
		return fault.Wrap(fault.InvalidArgs, err, "create module %q: %v", req.Name, err)
	}
	m, err := r.newModule(ctx, c, labels)
	if err != nil {
		if derr := c.Delete(ctx, containerd.WithSnapshotCleanup); derr != nil {
			r.log.Warn("delete container of failed create", "module", req.Name, "err", derr)
		}
		return err
	}
	m.mu.Lock()
	m.st = moduleState{State: StateCreated}
	r.changedLocked(m)
	m.mu.Unlock()
	r.mu.Lock()
	r.modules[m.name] = m
	r.mu.Unlock()
	r.stampUsed(ctx, img.Metadata(), r.cfg.Now())
	r.log.Info("module created", "module", req.Name, "image", req.Image, "snapshotter", r.snapshotter)
	return nil
}

// image finds ref as given, then in its normalised Docker form
// ("busybox" → "docker.io/library/busybox:latest").
func (r *Runtime) image(ctx context.Context, ref string) (containerd.Image, error) {
	img, err := r.client.GetImage(ctx, ref)
	if errdefs.IsNotFound(err) {
		if named, perr := reference.ParseDockerRef(ref); perr == nil && named.String() != ref {
			img, err = r.client.GetImage(ctx, named.String())
		}
	}
	if errdefs.IsNotFound(err) {
		return nil, fault.Wrap(fault.NotFound, err, "image %s is not present; pull or import it", ref)
	}
	if err != nil {
		return nil, classify(err, "look up image %s", ref)
	}
	return img, nil
}

// newModule builds the in-memory module for container c of ours: its
// settings from the labels, its supervision state from disk.
func (r *Runtime) newModule(ctx context.Context, c containerd.Container, labels map[string]string) (*module, error) {
	name := c.ID()
	maxBytes, _ := strconv.ParseInt(labels[labelLogMaxBytes], 10, 64)
	if maxBytes < minLogMaxBytes {
		maxBytes = defaultLogMaxBytes
	}
	files, _ := strconv.Atoi(labels[labelLogFiles])
	if files < 1 {
		files = defaultLogFiles
	}
	maxBytes, files = capLog(maxBytes, files, r.cfg.MaxLogBytes)
	policy := modspec.RestartPolicy(labels[labelRestart])
	if !policy.Valid() {
		policy = modspec.RestartAlways
	}
	logs, err := logstore.Open(filepath.Join(r.cfg.StateDir, "logs", name), maxBytes, files, r.cfg.Now)
	if err != nil {
		return nil, fmt.Errorf("module %q: %w", name, err)
	}
	m := &module{name: name, image: labels[labelImage], policy: policy, container: c, logs: logs, st: moduleState{State: StateCreated}}
	m.netMode, m.ports = networkFromLabels(labels)
	if data, err := os.ReadFile(r.statePath(name)); err == nil {
		if err := json.Unmarshal(data, &m.st); err != nil {
			r.log.Warn("unreadable module state; starting afresh", "module", name, "err", err)
			m.st = moduleState{State: StateCreated}
		}
	}
	return m, nil
}

// lockModule is module name with its op lock held (the caller unlocks
// m.op), and ctx in the runtime's containerd namespace.
func (r *Runtime) lockModule(ctx context.Context, name string) (context.Context, *module, error) {
	m, err := r.module(name)
	if err != nil {
		return ctx, nil, err
	}
	m.op.Lock()
	return namespaces.WithNamespace(ctx, r.cfg.Namespace), m, nil
}

// Start starts module name (a no-op if it runs). It clears a stop by
// request and the back-off.
func (r *Runtime) Start(ctx context.Context, name string) error {
	ctx, m, err := r.lockModule(ctx, name)
	if err != nil {
		return err
	}
	defer m.op.Unlock()
	m.mu.Lock()
	if m.removed {
		m.mu.Unlock()
		return fault.New(fault.NotFound, "module %q does not exist", name)
	}
	if m.task != nil {
		m.mu.Unlock()
		return nil
	}
	r.cancelRestartLocked(m)
	m.st.StopRequested = false
	m.st.Step = 0
	m.st.RestartCount = 0
	m.mu.Unlock()
	return r.startTask(ctx, m)
}

// startTask creates and starts m's task with its output going to m's
// log. m.op is held.
func (r *Runtime) startTask(ctx context.Context, m *module) error {
	if old, err := m.container.Task(ctx, nil); err == nil {
		// An exited task nobody deleted (its delete failed earlier).
		if _, err := old.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return classify(err, "delete old task of %q", m.name)
		}
	} else if !errdefs.IsNotFound(err) {
		return classify(err, "load task of %q", m.name)
	}
	refused := func(err error) error {
		r.log.Error("module start refused", "module", m.name, "err", err)
		m.mu.Lock()
		m.st.State = StateFailed
		m.st.Reason = fault.Message(err)
		r.changedLocked(m)
		m.mu.Unlock()
		return err
	}
	var spec *specs.Spec
	if r.cfg.StartCheck != nil || r.cfg.MountCheck != nil || r.cfg.Confine != nil {
		var err error
		if spec, err = m.container.Spec(ctx); err != nil {
			return classify(err, "read the spec of %q", m.name)
		}
	}
	if r.cfg.Confine != nil {
		changed, err := r.cfg.Confine(m.name, m.image, spec)
		if err != nil {
			return fmt.Errorf("module %q: %w", m.name, err)
		}
		if changed {
			if err := m.container.Update(ctx, containerd.UpdateContainerOpts(containerd.WithSpec(spec))); err != nil {
				return classify(err, "update the spec of %q", m.name)
			}
			r.log.Info("module's spec tightened before its start", "module", m.name)
		}
	}
	if r.cfg.StartCheck != nil {
		// Bind sources are resolved again now: what a module left in its
		// directories since the last start must not widen what it gets.
		if err := r.cfg.StartCheck(m.name, m.image, spec); err != nil {
			return refused(err)
		}
	}
	tio, err := newTaskIO(r.fifoDir(m.name), m.logs)
	if err != nil {
		return fmt.Errorf("module %q: %w", m.name, err)
	}
	task, err := m.container.NewTask(ctx, func(string) (cio.IO, error) { return tio, nil })
	if err != nil {
		tio.Cancel()
		tio.Close()
		return classify(err, "start module %q", m.name)
	}
	if r.cfg.MountCheck != nil {
		// runc mounted by path: what it mounted must be what was checked.
		if err := r.cfg.MountCheck(m.name, m.image, spec, task.Pid()); err != nil {
			if _, derr := task.Delete(ctx, containerd.WithProcessKill); derr != nil {
				r.log.Warn("delete task whose mounts were refused", "module", m.name, "err", derr)
			}
			tio.Cancel()
			tio.Close()
			return refused(err)
		}
	}
	if err := r.attachNet(ctx, m, task.Pid()); err != nil {
		if _, derr := task.Delete(ctx, containerd.WithProcessKill); derr != nil {
			r.log.Warn("delete task that could not join the network", "module", m.name, "err", derr)
		}
		tio.Cancel()
		tio.Close()
		return err
	}
	startedAt := r.cfg.Now() // before Start: a quick exit must not seem to precede it
	if err := task.Start(ctx); err != nil {
		if _, derr := task.Delete(ctx, containerd.WithProcessKill); derr != nil {
			r.log.Warn("delete task that failed to start", "module", m.name, "err", derr)
		}
		r.detachNet(ctx, m)
		tio.Cancel()
		tio.Close()
		return classify(err, "start module %q", m.name)
	}
	m.mu.Lock()
	m.task, m.io, m.pid = task, tio, task.Pid()
	m.st.State = StateRunning
	m.st.StartedAt = startedAt
	m.st.Reason = ""
	r.log.Info("module started", "module", m.name, "pid", m.pid, "restart_count", m.st.RestartCount)
	r.changedLocked(m)
	m.mu.Unlock()
	return nil
}

// Stop stops module name: SIGTERM, then SIGKILL to all its processes
// after timeout. Supervision will not restart it.
func (r *Runtime) Stop(ctx context.Context, name string, timeout time.Duration) error {
	ctx, m, err := r.lockModule(ctx, name)
	if err != nil {
		return err
	}
	defer m.op.Unlock()
	return r.stopLocked(ctx, m, timeout)
}

// stopLocked stops m; m.op is held.
func (r *Runtime) stopLocked(ctx context.Context, m *module, timeout time.Duration) error {
	m.mu.Lock()
	m.st.StopRequested = true
	r.cancelRestartLocked(m)
	task, pid := m.task, m.pid
	if task == nil {
		if m.st.State == StateRestarting {
			m.st.State = StateStopped
		}
		r.changedLocked(m)
		m.mu.Unlock()
		return nil
	}
	r.persistLocked(m)
	m.mu.Unlock()

	waitC, err := task.Wait(ctx)
	if err != nil {
		if errdefs.IsNotFound(err) {
			r.finishTask(ctx, m, pid, -1)
			return nil
		}
		return classify(err, "stop module %q", m.name)
	}
	es, err := r.terminate(ctx, m.name, task, waitC, timeout)
	if err != nil {
		return err
	}
	if err := es.Error(); err != nil {
		return classify(err, "wait for module %q to stop", m.name)
	}
	r.finishTask(ctx, m, pid, int(es.ExitCode()))
	return nil
}

// terminate sends task (of module name) SIGTERM and, when it has not exited
// after timeout, SIGKILL to all its processes; it returns the exit status
// from waitC, the task's Wait channel.
func (r *Runtime) terminate(ctx context.Context, name string, task containerd.Task, waitC <-chan containerd.ExitStatus, timeout time.Duration) (containerd.ExitStatus, error) {
	if err := task.Kill(ctx, syscall.SIGTERM); err != nil && !errdefs.IsNotFound(err) {
		return containerd.ExitStatus{}, classify(err, "stop module %q", name)
	}
	select {
	case es := <-waitC:
		return es, nil
	case <-time.After(timeout):
	case <-ctx.Done():
		return containerd.ExitStatus{}, ctx.Err()
	}
	r.log.Info("module ignored SIGTERM; killing it", "module", name, "timeout", timeout)
	if err := task.Kill(ctx, syscall.SIGKILL, containerd.WithKillAll); err != nil && !errdefs.IsNotFound(err) {
		return containerd.ExitStatus{}, classify(err, "kill module %q", name)
	}
	select {
	case es := <-waitC:
		return es, nil
	case <-ctx.Done():
		return containerd.ExitStatus{}, ctx.Err()
	}
}

// Restart stops module name (as Stop) and starts it again.
func (r *Runtime) Restart(ctx context.Context, name string, timeout time.Duration) error {
	if err := r.Stop(ctx, name, timeout); err != nil {
		return err
	}
	return r.Start(ctx, name)
}

// Remove stops module name (10 s grace) and deletes its task, container,
// snapshot, logs and state.
func (r *Runtime) Remove(ctx context.Context, name string) error {
	ctx, m, err := r.lockModule(ctx, name)
	if err != nil {
		return err
	}
	defer m.op.Unlock()
	if err := r.stopLocked(ctx, m, defaultStopTimeout); err != nil {
		return err
	}
	if task, err := m.container.Task(ctx, nil); err == nil {
		if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return classify(err, "delete task of %q", name)
		}
	}
	r.detachNet(ctx, m)
	if err := m.container.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return classify(err, "delete container %q", name)
	}
	r.mu.Lock()
	delete(r.modules, name)
	r.mu.Unlock()
	r.forget(m)
	os.RemoveAll(filepath.Join(r.cfg.StateDir, "logs", name))
	r.log.Info("module removed", "module", name)
	return nil
}

// forget drops m's local state after its container is gone.
func (r *Runtime) forget(m *module) {
	m.mu.Lock()
	m.removed = true
	r.cancelRestartLocked(m)
	st := m.statusLocked()
	tio := m.io
	m.io = nil
	m.mu.Unlock()
	if tio != nil {
		tio.Close()
	}
	m.logs.Close()
	os.RemoveAll(r.fifoDir(m.name))
	os.Remove(r.statePath(m.name))
	st.State = StateRemoved
	r.notes.push(st)
}

// capLog fits a log of files files of maxBytes into limit bytes (0: no
// limit): fewer files first, then a smaller one.
func capLog(maxBytes int64, files int, limit int64) (int64, int) {
	if limit <= 0 || maxBytes <= limit/int64(files) {
		return maxBytes, files
	}
	if maxBytes >= limit {
		return max(limit, minLogMaxBytes), 1
	}
	return maxBytes, int(limit / maxBytes)
}
