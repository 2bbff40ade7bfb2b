package ctrd

import (
	"context"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/namespaces"
)

// Shutdown stops every running module -- SIGTERM, then SIGKILL to all its
// processes after timeout, all modules at once -- and closes the runtime.
// It is for the system shutting down: modrtd's unit is ordered after the
// services modules use (and containerd), so the modules end while those
// still serve, rather than in systemd-shutdown's final kill sweep. Nothing
// is recorded as a stop by request: on the next boot each module starts
// again by its restart policy, as after any reboot. Supervision ends first,
// so no module is restarted meanwhile.
func (r *Runtime) Shutdown(timeout time.Duration) error {
	r.mu.Lock()
	mods := make([]*module, 0, len(r.modules))
	for _, m := range r.modules {
		mods = append(mods, m)
	}
	r.mu.Unlock()
	r.cancel() // no more exit handling or restarts
	ctx := namespaces.WithNamespace(context.Background(), r.cfg.Namespace)
	var wg sync.WaitGroup
	for _, m := range mods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.shutdownModule(ctx, m, timeout)
		}()
	}
	wg.Wait()
	return r.Close()
}

func (r *Runtime) shutdownModule(ctx context.Context, m *module, timeout time.Duration) {
	m.op.Lock()
	defer m.op.Unlock()
	m.mu.Lock()
	r.cancelRestartLocked(m)
	task, tio := m.task, m.io
	m.mu.Unlock()
	if task == nil {
		return
	}
	waitC, err := task.Wait(ctx)
	if err != nil {
		if !errdefs.IsNotFound(err) {
			r.log.Warn("shutdown: cannot wait for module", "module", m.name, "err", err)
		}
		return
	}
	r.log.Info("system shutdown: stopping module", "module", m.name, "timeout", timeout)
	if err := task.Kill(ctx, syscall.SIGTERM); err != nil && !errdefs.IsNotFound(err) {
		r.log.Warn("shutdown: SIGTERM", "module", m.name, "err", err)
	}
	code := -1
	select {
	case es := <-waitC:
		code = int(es.ExitCode())
	case <-time.After(timeout):
		r.log.Info("module ignored SIGTERM; killing it", "module", m.name, "timeout", timeout)
		if err := task.Kill(ctx, syscall.SIGKILL, containerd.WithKillAll); err != nil && !errdefs.IsNotFound(err) {
			r.log.Warn("shutdown: SIGKILL", "module", m.name, "err", err)
		}
		select {
		case es := <-waitC:
			code = int(es.ExitCode())
		case <-time.After(timeout):
			r.log.Error("shutdown: module did not die after SIGKILL", "module", m.name)
			return
		}
	}
	if tio != nil {
		tio.Wait() // its last output is logged
	}
	if _, err := task.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
		r.log.Warn("shutdown: delete task", "module", m.name, "err", err)
	}
	r.detachNet(ctx, m)
	m.mu.Lock()
	m.task, m.io = nil, nil // m.st stays as it was: the next boot restarts by policy
	m.mu.Unlock()
	if tio != nil {
		tio.Close()
	}
	r.log.Info("module stopped for shutdown", "module", m.name, "exit_code", code)
}
