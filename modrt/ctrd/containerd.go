// Package ctrd is the Module Runtime's containerd backend: modules as
// containers and tasks, their supervision (restart policy and back-off on
// an injectable Clock), image pull, import and GC, and task output over
// FIFOs into the log store. modrt.Service consumes it as modrt.Backend.
package ctrd

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/events"
	"github.com/containerd/containerd/identifiers"
	"github.com/containerd/containerd/namespaces"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/atomicfile"
	"github.com/edgev2/edgev2/modrt/logstore"
	"github.com/edgev2/edgev2/modrt/modspec"
)

// Labels modrt records on its containers.
const (
	labelPrefix      = "org.edgev2."
	labelOwner       = labelPrefix + "owner" // always ownerValue: List and adoption look only at these
	labelImage       = labelPrefix + "image" // the image as the caller named it
	labelRestart     = labelPrefix + "restart-policy"
	labelLogMaxBytes = labelPrefix + "log-max-bytes"
	labelLogFiles    = labelPrefix + "log-files"
	labelNetwork     = labelPrefix + "network" // default, host or none; absent: host (modules made before the default network)
	labelPorts       = labelPrefix + "ports"   // JSON []PortMapping published on the default network
	ownerValue       = "edgev2"
)

const (
	defaultNamespace   = "edgev2"
	defaultStopTimeout = 10 * time.Second
	runcRuntime        = "io.containerd.runc.v2"
)

// RuntimeConfig says where containerd is and where modrt keeps its state.
type RuntimeConfig struct {
	Address   string // containerd's socket
	Namespace string // containerd namespace; default "edgev2"
	StateDir  string // logs, FIFOs and supervision state
	Logger    *slog.Logger
	Now       func() time.Time // default time.Now; ignored when Clock is set
	// Clock, when set, is the time supervision reads and waits on
	// (tests); default the real clock with Now.
	Clock       Clock
	BackoffBase time.Duration // first restart delay; default 1 s
	BackoffCap  time.Duration // default 5 min
	StableAfter time.Duration // a run this long resets the back-off; default 60 s
	// RegistryRoots are the trust anchors for registries' TLS
	// certificates; nil means the system roots.
	RegistryRoots *x509.CertPool
	// StartCheck, when set, vets a module's OCI spec right before each
	// start of its task (by request, by supervision, after a restart of
	// modrtd or containerd); an error wrapping ErrPolicy refuses the start
	// for good (the module is failed, with the reason in its status).
	StartCheck func(module, image string, spec *specs.Spec) error
	// MountCheck, when set, vets the created task (its init's pid) after
	// runc made its mounts and before it runs: a bind source swapped for a
	// link since StartCheck is caught here. An error refuses the start
	// like StartCheck's.
	MountCheck func(module, image string, spec *specs.Spec, pid uint32) error
	// Confine, when set, may tighten a module's OCI spec right before
	// each start, before StartCheck checks it (a container made by an
	// older modrtd gets what modules get now); when it reports a change,
	// the spec is stored on the container before its task is made.
	Confine func(module, image string, spec *specs.Spec) (changed bool, err error)
	// Network is the default network; nil: modules on it cannot start.
	Network Network
	// MaxLogBytes, when set, is the most disk one module's log may take
	// (the policy's max_log_size): a container whose labels ask for more,
	// made by an older modrtd or before the limit was lowered, gets fewer
	// files (or smaller ones) when it is opened.
	MaxLogBytes int64
}

// Runtime runs modules as containerd containers in one namespace and
// supervises them. Modules running when it opens are adopted, never
// killed; they keep running when it closes.
type Runtime struct {
	cfg         RuntimeConfig
	client      *containerd.Client
	snapshotter string
	log         *slog.Logger
	afterFunc   func(time.Duration, func()) Timer

	ctx       context.Context // namespaced; cancelled by Close
	cancel    context.CancelFunc
	subCancel context.CancelFunc // of the current event subscription; owned by Open, then watch
	wg        sync.WaitGroup     // every goroutine the runtime starts

	createMu sync.Mutex // serialises Create and sync, which both add modules

	mu        sync.Mutex
	modules   map[string]*module
	listeners []func(Status)
	closed    bool

	notes notifier

	registryPool atomic.Pointer[x509.CertPool]

	netHook atomic.Pointer[func()] // called after a module joined or left the default network
}

// module is one container of ours. op serialises lifecycle operations
// (start, stop, exit handling, removal), which may wait on containerd; mu
// guards the fields and is held only briefly, so Status never waits.
type module struct {
	name      string
	image     string
	policy    modspec.RestartPolicy
	container containerd.Container
	logs      *logstore.Log
	netMode   string                // netModeDefault, netModeHost or netModeNone
	ports     []modspec.PortMapping // published on the default network

	op sync.Mutex

	mu         sync.Mutex
	st         moduleState
	pid        uint32
	task       containerd.Task
	io         *taskIO
	timer      Timer
	timerArmed bool
	gen        uint64 // bumped when a pending restart is (re)armed or cancelled
	removed    bool
	addr       netip.Addr // on the default network, while attached
}

// moduleState is the supervision state kept across modrtd restarts, in
// StateDir/modules/<name>.json.
type moduleState struct {
	State         State     `json:"state"`
	ExitCode      int       `json:"exit_code"`
	StartedAt     time.Time `json:"started_at"`
	FinishedAt    time.Time `json:"finished_at"`
	RestartCount  int       `json:"restart_count"`
	Step          int       `json:"backoff_step"`
	StopRequested bool      `json:"stop_requested"`
	Reason        string    `json:"reason,omitempty"` // why the last start was refused
}

// OpenRuntime connects to containerd, adopts the modules of its namespace
// (running ones keep running; supervision resumes) and starts following
// task exits.
func OpenRuntime(ctx context.Context, cfg RuntimeConfig) (*Runtime, error) {
	if cfg.Namespace == "" {
		cfg.Namespace = defaultNamespace
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock != nil {
		cfg.Now = cfg.Clock.Now
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.BackoffBase <= 0 {
		cfg.BackoffBase = time.Second
	}
	if cfg.BackoffCap <= 0 {
		cfg.BackoffCap = 5 * time.Minute
	}
	if cfg.StableAfter <= 0 {
		cfg.StableAfter = 60 * time.Second
	}
	if cfg.StateDir == "" {
		return nil, fault.New(fault.InvalidArgs, "module runtime: no state directory configured")
	}
	if err := identifiers.Validate(cfg.Namespace); err != nil {
		return nil, fault.Wrap(fault.InvalidArgs, err, "module runtime: bad namespace %q: %v", cfg.Namespace, err)
	}
	for _, d := range []string{"logs", "fifo", "modules"} {
		if err := os.MkdirAll(filepath.Join(cfg.StateDir, d), 0o700); err != nil {
			return nil, fmt.Errorf("make state dir: %w", err)
		}
	}
	client, err := containerd.New(cfg.Address, containerd.WithDefaultNamespace(cfg.Namespace), containerd.WithTimeout(10*time.Second))
	if err != nil {
		return nil, fault.Wrap(fault.Unavailable, err, "containerd at %s is not reachable", cfg.Address)
	}
	rctx, cancel := context.WithCancel(namespaces.WithNamespace(context.Background(), cfg.Namespace))
	r := &Runtime{
		cfg:     cfg,
		client:  client,
		log:     cfg.Logger.With("component", "modrt"),
		ctx:     rctx,
		cancel:  cancel,
		modules: map[string]*module{},
	}
	r.registryPool.Store(cfg.RegistryRoots)
	r.afterFunc = r.newTimer
	if cfg.Clock != nil {
		r.afterFunc = cfg.Clock.AfterFunc
	}
	r.notes.init()
	r.wg.Add(1)
	go r.notifyLoop()

	octx := namespaces.WithNamespace(ctx, cfg.Namespace)
	r.snapshotter = r.pickSnapshotter(octx)
	evs, errs := r.subscribe()
	if err := r.sync(octx); err != nil {
		r.Close()
		return nil, err
	}
	r.wg.Add(1)
	go r.watch(evs, errs)
	return r, nil
}

// pickSnapshotter prefers overlayfs and falls back to native where
// overlayfs cannot work (its plugin failed to load, e.g. on a root that
// is itself overlayfs).
func (r *Runtime) pickSnapshotter(ctx context.Context) string {
	resp, err := r.client.IntrospectionService().Plugins(ctx, []string{`type=="io.containerd.snapshotter.v1",id=="overlayfs"`})
	if err == nil && len(resp.Plugins) == 1 && resp.Plugins[0].InitErr == nil {
		return "overlayfs"
	}
	r.log.Warn("overlayfs snapshotter unavailable; using native (full copies of each image)", "err", err)
	return "native"
}

// Snapshotter is the snapshotter modules' root filesystems use.
func (r *Runtime) Snapshotter() string { return r.snapshotter }

func (r *Runtime) subscribe() (<-chan *events.Envelope, <-chan error) {
	ctx, cancel := context.WithCancel(r.ctx)
	r.subCancel = cancel
	return r.client.Subscribe(ctx, fmt.Sprintf("topic==%q,namespace==%q", exitTopic, r.cfg.Namespace))
}

func (r *Runtime) cancelSub() {
	if r.subCancel != nil {
		r.subCancel()
	}
}

// Close stops supervision and log capture. Modules keep running; the
// next OpenRuntime adopts them.
func (r *Runtime) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	mods := make([]*module, 0, len(r.modules))
	for _, m := range r.modules {
		mods = append(mods, m)
	}
	r.mu.Unlock()

	r.cancel()
	for _, m := range mods {
		m.mu.Lock()
		r.cancelRestartLocked(m)
		m.mu.Unlock()
	}
	r.notes.close()
	r.wg.Wait()
	for _, m := range mods {
		m.op.Lock()
		m.mu.Lock()
		tio := m.io
		m.io = nil
		m.mu.Unlock()
		if tio != nil {
			tio.detach()
		}
		m.logs.Close()
		m.op.Unlock()
	}
	return r.client.Close()
}

// OnChange registers f to be called, in order and from one goroutine, with
// a module's status after every change of its state.
func (r *Runtime) OnChange(f func(Status)) {
	r.mu.Lock()
	r.listeners = append(r.listeners, f)
	r.mu.Unlock()
}

func (r *Runtime) statePath(name string) string {
	return filepath.Join(r.cfg.StateDir, "modules", name+".json")
}

func (r *Runtime) fifoDir(name string) string {
	return filepath.Join(r.cfg.StateDir, "fifo", name)
}

func (r *Runtime) module(name string) (*module, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m, ok := r.modules[name]; ok {
		return m, nil
	}
	return nil, fault.New(fault.NotFound, "module %q does not exist", name)
}

// Status returns the status of module name.
func (r *Runtime) Status(ctx context.Context, name string) (Status, error) {
	m, err := r.module(name)
	if err != nil {
		return Status{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.statusLocked(), nil
}

// List returns the status of every module, by name.
func (r *Runtime) List(ctx context.Context) ([]Status, error) {
	r.mu.Lock()
	mods := make([]*module, 0, len(r.modules))
	for _, m := range r.modules {
		mods = append(mods, m)
	}
	r.mu.Unlock()
	out := make([]Status, 0, len(mods))
	for _, m := range mods {
		m.mu.Lock()
		out = append(out, m.statusLocked())
		m.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Pids returns the pids (in the host's pid namespace) of every process of
// module name's task; none when it does not run.
func (r *Runtime) Pids(ctx context.Context, name string) ([]uint32, error) {
	ctx = namespaces.WithNamespace(ctx, r.cfg.Namespace)
	m, err := r.module(name)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	task := m.task
	m.mu.Unlock()
	if task == nil {
		// Not recorded yet (the instant between runc's create/start and
		// the runtime taking note): containerd knows the task already, and
		// a process of it must not pass for no module's (a host tool's).
		t, err := m.container.Task(ctx, nil)
		if errdefs.IsNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, classify(err, "load task of %q", name)
		}
		task = t
	}
	ps, err := task.Pids(ctx)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil, nil
		}
		return nil, classify(err, "list processes of %q", name)
	}
	pids := make([]uint32, len(ps))
	for i, p := range ps {
		pids[i] = p.Pid
	}
	return pids, nil
}

func (m *module) statusLocked() Status {
	return Status{
		Name:         m.name,
		Image:        m.image,
		State:        m.st.State,
		ExitCode:     m.st.ExitCode,
		StartedAt:    m.st.StartedAt,
		FinishedAt:   m.st.FinishedAt,
		RestartCount: m.st.RestartCount,
		Pid:          m.pid,
		Reason:       m.st.Reason,
		Network:      m.netMode,
		Addr:         m.addr,
	}
}

// changedLocked persists m's state, wakes log followers and queues an
// OnChange notification; m.mu is held.
func (r *Runtime) changedLocked(m *module) {
	r.persistLocked(m)
	m.logs.Wake()
	r.notes.push(m.statusLocked())
}

func (r *Runtime) persistLocked(m *module) {
	if m.removed {
		return
	}
	data, err := json.Marshal(m.st)
	if err == nil {
		err = atomicfile.WriteFile(r.statePath(m.name), data, 0o600)
	}
	if err != nil {
		r.log.Error("save module state", "module", m.name, "err", err)
	}
}

// followEnded reports whether m will log no more: log followers end then.
func (r *Runtime) followEnded(m *module) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.removed || (m.st.State != StateRunning && m.st.State != StateRestarting)
}

// classify turns a containerd error into a caller-facing one.
func classify(err error, format string, args ...any) error {
	what := fmt.Sprintf(format, args...)
	switch {
	case isUnavailable(err):
		return fault.Wrap(fault.Unavailable, err, "%s: containerd is not reachable", what)
	case errdefs.IsNotFound(err):
		return fault.Wrap(fault.NotFound, err, "%s: not found", what)
	case errdefs.IsAlreadyExists(err):
		return fault.Wrap(fault.AlreadyExists, err, "%s: already exists", what)
	case errdefs.IsInvalidArgument(err):
		return fault.Wrap(fault.InvalidArgs, err, "%s: %v", what, err)
	}
	return fault.Wrap(fault.Failed, err, "%s: %v", what, err)
}

func isUnavailable(err error) bool {
	if errdefs.IsUnavailable(err) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	if s, ok := status.FromError(err); ok && s.Code() == codes.Unavailable {
		return true
	}
	return strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "transport is closing")
}

// notifier delivers OnChange notifications in order from one goroutine,
// so listeners may call back into the runtime.
type notifier struct {
	mu     sync.Mutex
	queue  []Status
	kick   chan struct{}
	closed bool
}

func (n *notifier) init() { n.kick = make(chan struct{}, 1) }

func (n *notifier) push(s Status) {
	n.mu.Lock()
	if !n.closed {
		n.queue = append(n.queue, s)
	}
	n.mu.Unlock()
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

func (n *notifier) close() {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

func (r *Runtime) notifyLoop() {
	defer r.wg.Done()
	for range r.notes.kick {
		r.notes.mu.Lock()
		q, closed := r.notes.queue, r.notes.closed
		r.notes.queue = nil
		r.notes.mu.Unlock()
		r.mu.Lock()
		ls := make([]func(Status), len(r.listeners))
		copy(ls, r.listeners)
		r.mu.Unlock()
		for _, s := range q {
			for _, f := range ls {
				f(s)
			}
		}
		if closed {
			return
		}
	}
}
