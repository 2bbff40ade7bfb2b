package ctrd

import (
	"context"
	"errors"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/events"
	"github.com/containerd/typeurl/v2"

	"github.com/edgev2/edgev2/modrt/modspec"
)

// restartDecision is what supervision does after a module's task exited
// by itself.
type restartDecision struct {
	Restart bool
	Delay   time.Duration
	Step    int // back-off step after this restart (the next delay doubles it)
}

// decideRestart is the restart policy: whether and when to restart after
// an exit with exitCode, given the back-off step reached so far and how
// long the task ran. The delay is base·2^step capped at backoffCap; a
// run of at least stableAfter starts the back-off over.
func decideRestart(p modspec.RestartPolicy, exitCode, step int, uptime, base, backoffCap, stableAfter time.Duration) restartDecision {
	switch {
	case p == modspec.RestartNever:
		return restartDecision{}
	case p == modspec.RestartOnFailure && exitCode == 0:
		return restartDecision{}
	case p != modspec.RestartAlways && p != modspec.RestartOnFailure:
		return restartDecision{}
	}
	if stableAfter > 0 && uptime >= stableAfter {
		step = 0
	}
	delay := base
	for i := 0; i < step && delay < backoffCap; i++ {
		delay *= 2
	}
	delay = min(delay, backoffCap)
	return restartDecision{Restart: true, Delay: delay, Step: step + 1}
}

// exitTopic is containerd's event for a process exit.
const exitTopic = "/tasks/exit"

// watch follows containerd's task exit events for the life of the
// runtime. When the stream breaks (containerd restarted or died) it
// subscribes again with back-off and resynchronises every module, which
// also catches exits it missed.
func (r *Runtime) watch(events <-chan *eventsEnvelope, errs <-chan error) {
	defer r.wg.Done()
	backoff := 100 * time.Millisecond
	for {
		if r.consume(events, errs) {
			return
		}
		r.log.Warn("containerd event stream lost; reconnecting", "address", r.cfg.Address)
		for {
			select {
			case <-r.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Second)
			if ok, err := r.client.IsServing(r.ctx); err != nil || !ok {
				continue
			}
			r.cancelSub()
			events, errs = r.subscribe()
			if err := r.sync(r.ctx); err != nil {
				r.log.Warn("resync with containerd failed; retrying", "err", err)
				r.cancelSub()
				continue
			}
			r.log.Info("reconnected to containerd", "address", r.cfg.Address)
			backoff = 100 * time.Millisecond
			break
		}
	}
}

// consume handles events until the stream ends; it reports whether the
// runtime is closing.
func (r *Runtime) consume(events <-chan *eventsEnvelope, errs <-chan error) bool {
	for {
		select {
		case <-r.ctx.Done():
			return true
		case err := <-errs:
			if r.ctx.Err() != nil {
				return true
			}
			r.log.Debug("event stream ended", "err", err)
			return false
		case env, ok := <-events:
			if !ok {
				return r.ctx.Err() != nil
			}
			if env.Topic != exitTopic || env.Namespace != r.cfg.Namespace {
				continue
			}
			v, err := typeurl.UnmarshalAny(env.Event)
			if err != nil {
				r.log.Warn("undecodable task exit event", "err", err)
				continue
			}
			ev, ok := v.(*apievents.TaskExit)
			if !ok || ev.ID != ev.ContainerID { // an exec'd process, not the task
				continue
			}
			m, err := r.module(ev.ContainerID)
			if err != nil {
				continue
			}
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				m.op.Lock()
				defer m.op.Unlock()
				r.finishTask(r.ctx, m, ev.Pid, int(ev.ExitStatus))
			}()
		}
	}
}

// finishTask records the exit of m's task with pid (ignored if it is not
// the current one: Stop or a resync got there first), deletes the task
// once its output is logged, and applies the restart policy. m.op is held.
func (r *Runtime) finishTask(ctx context.Context, m *module, pid uint32, code int) {
	m.mu.Lock()
	if m.removed || m.pid != pid || m.task == nil {
		m.mu.Unlock()
		return
	}
	task, tio := m.task, m.io
	m.mu.Unlock()

	if tio != nil {
		tio.Wait()
	}
	if _, err := task.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
		// The shim still has it; it is deleted on the next start or resync.
		r.log.Warn("delete exited task", "module", m.name, "err", err)
	}
	if tio != nil {
		tio.Close()
	}
	r.detachNet(ctx, m)

	m.mu.Lock()
	m.task, m.io, m.pid = nil, nil, 0
	r.exitedLocked(m, code)
	m.mu.Unlock()
}

// exitedLocked records an exit and applies the restart policy; m.mu is
// held. Times are all cfg.Now's (not containerd's ExitedAt), so uptime and
// back-off follow one clock.
func (r *Runtime) exitedLocked(m *module, code int) {
	at := r.cfg.Now()
	m.st.ExitCode = code
	m.st.FinishedAt = at
	var d restartDecision
	switch {
	case m.st.StopRequested:
		m.st.State = StateStopped
	default:
		d = decideRestart(m.policy, code, m.st.Step, at.Sub(m.st.StartedAt), r.cfg.BackoffBase, r.cfg.BackoffCap, r.cfg.StableAfter)
		switch {
		case d.Restart:
			m.st.State = StateRestarting
			m.st.Step = d.Step
		case code == 0:
			m.st.State = StateStopped
		default:
			m.st.State = StateFailed
		}
	}
	r.log.Info("module exited", "module", m.name, "exit_code", code, "state", m.st.State, "restart_in", d.Delay)
	if d.Restart {
		r.scheduleRestartLocked(m, d.Delay)
	}
	r.changedLocked(m)
}

// scheduleRestartLocked arms m's restart timer; m.mu is held.
func (r *Runtime) scheduleRestartLocked(m *module, delay time.Duration) {
	if m.timer != nil {
		m.timer.Stop()
	}
	if r.ctx.Err() != nil {
		return // closing: the next OpenRuntime schedules it again
	}
	m.gen++
	gen := m.gen
	m.timer = r.afterFunc(delay, func() { r.restartFromTimer(m, gen) })
	m.timerArmed = true
}

// cancelRestartLocked disarms a pending restart; m.mu is held.
func (r *Runtime) cancelRestartLocked(m *module) {
	m.gen++
	if m.timer != nil {
		m.timer.Stop()
	}
	m.timer, m.timerArmed = nil, false
}

func (r *Runtime) restartFromTimer(m *module, gen uint64) {
	if r.ctx.Err() != nil {
		return
	}
	m.op.Lock()
	defer m.op.Unlock()
	m.mu.Lock()
	if m.removed || m.gen != gen || m.st.State != StateRestarting {
		m.mu.Unlock()
		return
	}
	m.timer, m.timerArmed = nil, false
	m.st.RestartCount++
	m.mu.Unlock()
	err := r.startTask(r.ctx, m)
	if err == nil {
		return
	}
	if r.ctx.Err() != nil || errors.Is(err, ErrPolicy) {
		return // a refusal by the policy is final: startTask failed the module
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if errors.Is(err, errdefs.ErrNotFound) || errdefs.IsNotFound(err) {
		r.log.Error("module cannot be restarted: its container is gone", "module", m.name, "err", err)
		m.st.State = StateFailed
		r.changedLocked(m)
		return
	}
	// containerd may be down for a moment: try again later, backing off.
	d := decideRestart(modspec.RestartAlways, -1, m.st.Step, 0, r.cfg.BackoffBase, r.cfg.BackoffCap, r.cfg.StableAfter)
	m.st.Step = d.Step
	r.log.Warn("restart of module failed; trying again", "module", m.name, "err", err, "retry_in", d.Delay)
	r.scheduleRestartLocked(m, d.Delay)
	r.changedLocked(m)
}

// eventsEnvelope is containerd's event envelope.
type eventsEnvelope = events.Envelope
