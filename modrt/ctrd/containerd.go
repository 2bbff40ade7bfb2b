package ctrd

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/events"
	"github.com/containerd/containerd/identifiers"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	"github.com/distribution/reference"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/edgev2/edgev2/internal/atomicfile"
	"github.com/edgev2/edgev2/internal/fault"
	"github.com/edgev2/edgev2/modrt/logstore"
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
	// Network is the default network; nil: modules on it cannot start.
	Network Network
}

// Image is an image in the runtime's namespace.
type Image struct {
	Name      string
	Digest    string // of the manifest or index
	CreatedAt time.Time
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
	policy    RestartPolicy
	container containerd.Container
	logs      *logstore.Log
	netMode   string        // netModeDefault, netModeHost or netModeNone
	ports     []PortMapping // published on the default network

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
		req.Restart = RestartAlways
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
	policy := RestartPolicy(labels[labelRestart])
	if !policy.Valid() {
		policy = RestartAlways
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
	if err := task.Kill(ctx, syscall.SIGTERM); err != nil && !errdefs.IsNotFound(err) {
		return 0, classify(err, "stop module %q", m.name)
	}
	code := -1
	select {
	case es := <-waitC:
		code = int(es.ExitCode())
	case <-time.After(timeout):
		r.log.Info("module ignored SIGTERM; killing it", "module", m.name, "timeout", timeout)
		if err := task.Kill(ctx, syscall.SIGKILL, containerd.WithKillAll); err != nil && !errdefs.IsNotFound(err) {
			return 0, classify(err, "kill module %q", m.name)
		}
		select {
		case es := <-waitC:
			code = int(es.ExitCode())
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
		return 0, classify(err, "delete task of %q", m.name)
	}
	r.log.Info("stopped the module's orphaned task", "module", m.name, "exit_code", code)
	return code, nil
}

// Start starts module name (a no-op if it runs). It clears a stop by
// request and the back-off.
func (r *Runtime) Start(ctx context.Context, name string) error {
	ctx = namespaces.WithNamespace(ctx, r.cfg.Namespace)
	m, err := r.module(name)
	if err != nil {
		return err
	}
	m.op.Lock()
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
	if r.cfg.StartCheck != nil || r.cfg.MountCheck != nil {
		var err error
		if spec, err = m.container.Spec(ctx); err != nil {
			return classify(err, "read the spec of %q", m.name)
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
	ctx = namespaces.WithNamespace(ctx, r.cfg.Namespace)
	m, err := r.module(name)
	if err != nil {
		return err
	}
	m.op.Lock()
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
	if err := task.Kill(ctx, syscall.SIGTERM); err != nil && !errdefs.IsNotFound(err) {
		return classify(err, "stop module %q", m.name)
	}
	var es containerd.ExitStatus
	select {
	case es = <-waitC:
	case <-time.After(timeout):
		r.log.Info("module ignored SIGTERM; killing it", "module", m.name, "timeout", timeout)
		if err := task.Kill(ctx, syscall.SIGKILL, containerd.WithKillAll); err != nil && !errdefs.IsNotFound(err) {
			return classify(err, "kill module %q", m.name)
		}
		select {
		case es = <-waitC:
		case <-ctx.Done():
			return ctx.Err()
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := es.Error(); err != nil {
		return classify(err, "wait for module %q to stop", m.name)
	}
	r.finishTask(ctx, m, pid, int(es.ExitCode()))
	return nil
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
	ctx = namespaces.WithNamespace(ctx, r.cfg.Namespace)
	m, err := r.module(name)
	if err != nil {
		return err
	}
	m.op.Lock()
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

// ImportImage imports an OCI or Docker image archive, unpacks its images
// for the runtime's snapshotter and returns their names.
func (r *Runtime) ImportImage(ctx context.Context, archive io.Reader) ([]string, error) {
	ctx = namespaces.WithNamespace(ctx, r.cfg.Namespace)
	imgs, err := r.client.Import(ctx, archive)
	if err != nil {
		if isUnavailable(err) {
			return nil, classify(err, "import image")
		}
		return nil, fault.Wrap(fault.InvalidArgs, err, "import image archive: %v", err)
	}
	names := make([]string, 0, len(imgs))
	for _, img := range imgs {
		if err := containerd.NewImage(r.client, img).Unpack(ctx, r.snapshotter); err != nil {
			return nil, classify(err, "unpack image %s", img.Name)
		}
		names = append(names, img.Name)
	}
	if len(names) == 0 {
		return nil, fault.New(fault.InvalidArgs, "the image archive names no image (no io.containerd.image.name annotation or RepoTags)")
	}
	return names, nil
}

// Images lists the images of the runtime's namespace, by name.
func (r *Runtime) Images(ctx context.Context) ([]Image, error) {
	ctx = namespaces.WithNamespace(ctx, r.cfg.Namespace)
	imgs, err := r.client.ImageService().List(ctx)
	if err != nil {
		return nil, classify(err, "list images")
	}
	out := make([]Image, 0, len(imgs))
	for _, img := range imgs {
		out = append(out, Image{Name: img.Name, Digest: img.Target.Digest.String(), CreatedAt: img.CreatedAt})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
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
