// Package policy is the module policy: what a module spec may ask for
// (binds, capabilities, namespaces), checked when a module is created and
// on its OCI spec before every start. It imports no containerd.
package policy

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/modrt/config"
	"github.com/edgev2/edgev2/modrt/modspec"
)

// Policy is the module policy, an allowlist (modrtd builds it from its
// [policy] configuration with FromConfig). By default a module
// gets Docker's default capabilities, no devices, and may bind only its
// own volume directory; Grants add to that per module. It is checked when
// a module is created and again, on the container's OCI spec, right
// before every start.
type Policy struct {
	// VolumesDir holds one directory per module, VolumesDir/<module>,
	// which that module may bind (or bind a part of) read-write. Empty: no
	// volumes.
	VolumesDir string
	// ReadOnlyBinds are host paths any module may bind read-only.
	ReadOnlyBinds []string
	Grants        []config.Grant
	// Never are host paths no module may bind, or bind a parent of, even
	// if the policy lists them (NeverBind, modrtd's homedir, containerd's).
	Never []string
	// RuntimeDir is where the runtime keeps what it binds into modules
	// itself (workload sockets, hosts file); the start check leaves those
	// binds alone, except under VolumesDir.
	RuntimeDir string
	// MgmtDir is the management socket's directory, bound into edgeAgent
	// only; "" means RuntimeDir/mgmt.
	MgmtDir string
	// Static checks paths as written, without touching the filesystem
	// (edgectl config apply, on paths that may not exist yet).
	Static bool
	// AllowHostNetwork lets the module use NetworkMode "host" ([policy]
	// allow_host_network names it); set per module when it is created.
	AllowHostNetwork bool
	// HostNetwork are the modules [policy] allow_host_network names: the
	// start check refuses the host's network namespace to any other.
	HostNetwork []string
	// PidsLimit is the processes and threads a module may have when its
	// createOptions set no PidsLimit; MaxPidsLimit the most a deployment
	// may ask for. 0: no limit, no maximum.
	PidsLimit, MaxPidsLimit int64
	// NoPidsController: the kernel's pids cgroup controller is not
	// available here (a kernel without it, a container it is not
	// delegated to): runc fails any pids limit, so modules get none, as
	// Docker discards --pids-limit there.
	NoPidsController bool
	// MaxLogBytes is the most disk a module's log may take (LogConfig's
	// max-size times max-file); 0: no maximum.
	MaxLogBytes int64
}

// ErrPolicy marks a refusal by the module policy. The start check wraps
// it, so supervision knows retrying will not help.
var ErrPolicy = errors.New("refused by the module policy")

// DockerDefaultCaps is Docker's (and containerd's) default capability set:
// what a module may have without an opt-in.
var DockerDefaultCaps = []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}

// rules is what the policy allows one module.
type rules struct {
	module     string
	volume     string   // VolumesDir/<module>; "" without volumes
	rw, ro     []string // bind roots
	caps       []string // normalised; may hold "ALL"
	privileged bool
	hostPID    bool
}

func (p Policy) rulesFor(module, image string) rules {
	r := rules{module: module, ro: p.ReadOnlyBinds}
	if p.VolumesDir != "" && module != "" {
		r.volume = filepath.Join(p.VolumesDir, module)
	}
	for _, g := range p.Grants {
		if !g.Applies(module, image) {
			continue
		}
		r.rw = append(r.rw, g.Binds...)
		r.ro = append(r.ro, g.ReadOnlyBinds...)
		for _, c := range g.CapAdd {
			r.caps = append(r.caps, modspec.NormCap(c))
		}
		r.privileged = r.privileged || g.Privileged
		r.hostPID = r.hostPID || g.HostPID
	}
	return r
}

// capAllowed reports whether the module may have capability c (normalised).
func (r rules) capAllowed(c string) bool {
	if r.privileged || slices.Contains(r.caps, "ALL") {
		return true
	}
	if c == "ALL" {
		return false
	}
	return slices.Contains(DockerDefaultCaps, c) || slices.Contains(r.caps, c)
}

func (r rules) capError(field, c string) error {
	what := modspec.Quote(c) + " is beyond Docker's default capabilities"
	if modspec.NormCap(c) == "ALL" {
		what = "\"ALL\" (every capability, as good as Privileged)"
	}
	return fault.Wrap(fault.InvalidArgs, ErrPolicy, "module %s: %s %s; the runtime policy allows it only through cap_add in a [[policy.allow]] entry for this module", r.module, field, what)
}

// checkBind checks one bind source against the rules: it must be in the
// module's volume directory or under a root the policy lists (read-write
// roots for a read-write bind), must not expose what modules may never
// see, and must contain no symbolic link below its root (resolved now,
// with openat2, without following any). Missing directories in the
// module's own volume are made (0755, root's).
func (p Policy) checkBind(r rules, field, src string, ro bool) error {
	_, err := p.bindRoot(r, field, src, ro)
	return err
}

// bindRoot is checkBind, and names the root src was resolved from.
func (p Policy) bindRoot(r rules, field, src string, ro bool) (string, error) {
	src = filepath.Clean(src)
	refuse := func(format string, args ...any) error {
		return fault.Wrap(fault.InvalidArgs, ErrPolicy, "module %s: %s: bind source %s %s", r.module, field, modspec.Quote(src), fmt.Sprintf(format, args...))
	}
	if r.volume != "" && modspec.Within(src, r.volume) {
		if p.Static {
			return r.volume, nil
		}
		if _, err := os.Stat(r.volume); errors.Is(err, fs.ErrNotExist) {
			if err := os.MkdirAll(r.volume, 0o755); err != nil {
				return "", fmt.Errorf("module %s: make its volume directory: %w", r.module, err)
			}
			// 0755 whatever the umask (the unit's is 0077). Its
			// parent is modrtd's alone.
			if err := os.Chmod(r.volume, 0o755); err != nil {
				return "", fmt.Errorf("module %s: make its volume directory: %w", r.module, err)
			}
		}
		if err := openBeneath(r.volume, src, true); err != nil {
			return "", refuse("%v", err)
		}
		return r.volume, nil
	}
	var root string
	for _, c := range r.rw {
		if modspec.Within(src, filepath.Clean(c)) {
			root = filepath.Clean(c)
			break
		}
	}
	if root == "" {
		for _, c := range r.ro {
			if modspec.Within(src, filepath.Clean(c)) {
				if !ro {
					return "", refuse("may only be bound read-only (the runtime policy lists it in read_only_binds): add \":ro\", or list it in binds of a [[policy.allow]] entry for this module")
				}
				root = filepath.Clean(c)
				break
			}
		}
	}
	if root == "" {
		vol := "none"
		if r.volume != "" {
			vol = r.volume
		}
		return "", refuse("is outside what the runtime policy allows: the module's volume directory (%s), [policy] read_only_binds, or binds / read_only_binds of a [[policy.allow]] entry for this module", vol)
	}
	rel, _ := filepath.Rel(root, src)
	never := func(paths ...string) error {
		for _, n := range p.Never {
			n = filepath.Clean(n)
			for _, s := range paths {
				if modspec.Within(s, n) || modspec.Within(n, s) {
					return refuse("exposes %s, which modules may never bind", modspec.Quote(n))
				}
			}
		}
		return nil
	}
	if err := never(src); err != nil {
		return "", err
	}
	if !p.Static {
		// The root is the operator's; where it leads counts too.
		realRoot, err := filepath.EvalSymlinks(root)
		if err != nil {
			return "", refuse("cannot be resolved: %v", errors.Unwrap(err))
		}
		if err := never(filepath.Join(realRoot, rel)); err != nil {
			return "", err
		}
		for _, n := range p.Never {
			if rn, err := filepath.EvalSymlinks(n); err == nil && rn != filepath.Clean(n) {
				if modspec.Within(filepath.Join(realRoot, rel), rn) || modspec.Within(rn, filepath.Join(realRoot, rel)) {
					return "", refuse("exposes %s, which modules may never bind", modspec.Quote(n))
				}
			}
		}
	}
	if p.Static {
		return root, nil
	}
	if err := openBeneath(root, src, false); err != nil {
		return "", refuse("%v", err)
	}
	return root, nil
}

// openBeneath opens src, which is root or below it, from root without
// following any symbolic link below root (RESOLVE_NO_SYMLINKS) or leaving
// it (RESOLVE_BENEATH). With mkdir, missing directories are made one by
// one, each created with mkdirat in a directory held open.
func openBeneath(root, src string, mkdir bool) error {
	rel, err := filepath.Rel(root, src)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return fmt.Errorf("is not below %s", root)
	}
	rootfd, err := unix.Open(root, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("cannot be opened: %w", err)
	}
	defer unix.Close(rootfd)
	if rel == "." {
		return nil
	}
	// No O_NOFOLLOW: a link as the last component must fail too (ELOOP).
	how := &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := unix.Openat2(rootfd, rel, how)
	if err == nil {
		unix.Close(fd)
		return nil
	}
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) {
		return fmt.Errorf("contains a symbolic link below %s; the runtime does not follow links in bind sources (%w)", root, ErrBindLink)
	}
	if !errors.Is(err, unix.ENOENT) || !mkdir {
		return fmt.Errorf("cannot be opened below %s: %w", root, err)
	}
	dir, err := unix.Dup(rootfd)
	if err != nil {
		return err
	}
	defer func() { unix.Close(dir) }()
	for _, part := range strings.Split(rel, "/") {
		next, err := unix.Openat2(dir, part, how)
		made := false
		if errors.Is(err, unix.ENOENT) {
			err = unix.Mkdirat(dir, part, 0o755)
			made = err == nil
			if err != nil && !errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("cannot be made below %s: %w", root, err)
			}
			next, err = unix.Openat2(dir, part, how)
		}
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) {
			return fmt.Errorf("contains a symbolic link below %s; the runtime does not follow links in bind sources (%w)", root, ErrBindLink)
		}
		if err != nil {
			return fmt.Errorf("cannot be opened below %s: %w", root, err)
		}
		if made {
			// 0755 whatever the umask (the unit's is 0077), set on the
			// directory held open: the module may have swapped the name.
			if err := fchmodDir(next, 0o755); err != nil {
				unix.Close(next)
				return fmt.Errorf("cannot be made below %s: %w", root, err)
			}
		}
		unix.Close(dir)
		dir = next
	}
	return nil
}

// fchmodDir sets the mode of the directory pathfd (an O_PATH descriptor)
// holds, through a descriptor opened from it.
func fchmodDir(pathfd int, mode uint32) error {
	fd, err := unix.Openat(pathfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Fchmod(fd, mode)
}

// ErrBindLink is why a bind source with a symbolic link below its root
// is refused.
var ErrBindLink = errors.New("symbolic link in bind source")

// CheckStart checks a container's OCI spec against the policy, right
// before its task starts: capabilities, the host pid and network namespaces,
// device access, and every bind source, resolved again now. Binds the runtime
// made itself (under RuntimeDir, and the host's name service files) are left
// alone. Errors wrap ErrPolicy.
func (p Policy) CheckStart(module, image string, spec *specs.Spec) error {
	r := p.rulesFor(module, image)
	if spec.Process != nil && spec.Process.Capabilities != nil {
		for _, c := range spec.Process.Capabilities.Bounding {
			if !r.capAllowed(c) {
				return r.capError("capability", c)
			}
		}
	}
	if spec.Linux != nil {
		pidNS, netNS := false, false
		for _, ns := range spec.Linux.Namespaces {
			pidNS = pidNS || ns.Type == specs.PIDNamespace
			netNS = netNS || ns.Type == specs.NetworkNamespace
		}
		if !pidNS && !r.hostPID && !r.privileged {
			return fault.Wrap(fault.InvalidArgs, ErrPolicy, "module %s: the host's pid namespace needs host_pid in a [[policy.allow]] entry for this module", module)
		}
		if !netNS && !p.AllowHostNetwork && !slices.Contains(p.HostNetwork, module) {
			return fault.Wrap(fault.InvalidArgs, ErrPolicy, "module %s: the host's network namespace needs the module in [policy] allow_host_network", module)
		}
		devices := len(spec.Linux.Devices) > 0
		if res := spec.Linux.Resources; res != nil {
			for _, d := range res.Devices {
				devices = devices || d.Allow
			}
		}
		if devices && !r.privileged {
			return fault.Wrap(fault.InvalidArgs, ErrPolicy, "module %s: device access needs privileged in a [[policy.allow]] entry for this module", module)
		}
	}
	for i, m := range spec.Mounts {
		if !isBind(m) || p.RuntimeBind(module, m) {
			continue
		}
		if err := p.checkBind(r, fmt.Sprintf("mount %d on %s", i, modspec.Quote(m.Destination)), m.Source, readOnly(m)); err != nil {
			return err
		}
	}
	return nil
}

// pidsController reports whether containers here can have a pids limit:
// cgroup v2 lists the controller in the root's cgroup.controllers (in a
// container, the root it was delegated), cgroup v1 mounts it.
func pidsController() bool {
	if b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return slices.Contains(strings.Fields(string(b)), "pids")
	}
	fi, err := os.Stat("/sys/fs/cgroup/pids")
	return err == nil && fi.IsDir()
}

// Pids is the pids limit a module whose spec holds limit (in the OCI
// spec's terms: nil or 0 is none set, by a modrtd before pids limits; -1
// is none, as the deployment asked where the policy had no maximum) gets
// at its start under the policy: the default for none set, the maximum
// for more (or for none, under a maximum), 0 to leave it.
func (p Policy) Pids(limit *int64) int64 {
	switch {
	case limit == nil || *limit == 0:
		return cmp.Or(p.PidsLimit, p.MaxPidsLimit)
	case *limit < 0:
		return p.MaxPidsLimit
	case p.MaxPidsLimit > 0 && *limit > p.MaxPidsLimit:
		return p.MaxPidsLimit
	}
	return 0
}

// Privileged reports whether the policy lets module (from image) be
// privileged.
func (p Policy) Privileged(module, image string) bool {
	return p.rulesFor(module, image).privileged
}

func isBind(m specs.Mount) bool {
	return m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind")
}

// readOnly reports whether bind m is read-only all the way down: "ro" on
// a recursive bind leaves the file systems mounted below its source
// writable, unless "rro" makes them read-only too; and mounts propagated
// in later (shared or slave propagation) keep their own flags.
func readOnly(m specs.Mount) bool {
	propagates := slices.ContainsFunc(m.Options, func(o string) bool {
		return o == "shared" || o == "rshared" || o == "slave" || o == "rslave"
	})
	return slices.Contains(m.Options, "ro") && !propagates && (!slices.Contains(m.Options, "rbind") || slices.Contains(m.Options, "rro"))
}

// Where below RuntimeDir the runtime keeps what it binds into modules
// (cmd/edgev2-modrtd and Service use the same names).
const (
	runtimeWorkloadDir = "workload" // <RuntimeDir>/workload/<module>: the module's socket directory
	runtimeHostsDir    = "hosts"    // <RuntimeDir>/hosts/<file>: hosts and resolv.conf files
	runtimeMgmtDir     = "mgmt"     // <RuntimeDir>/mgmt: edgeAgent's socket directory (default)
)

// RuntimeBind reports whether m is one of the runtime's own binds into
// module: read-only, and exactly what the runtime binds into that module
// (its own socket directory, the hosts files, the management socket
// directory for edgeAgent), so a stored spec that binds anything else of
// the runtime's (another module's socket directory, the management socket
// for another module, the runtime's state) is checked like any bind, and
// refused, at every start.
func (p Policy) RuntimeBind(module string, m specs.Mount) bool {
	if !slices.Contains(m.Options, "ro") {
		return false
	}
	src := filepath.Clean(m.Source)
	if (src == "/etc/hosts" || src == "/etc/resolv.conf") && src == filepath.Clean(m.Destination) {
		return true
	}
	if p.RuntimeDir == "" || module == "" {
		return false
	}
	rt := filepath.Clean(p.RuntimeDir)
	mgmt := p.MgmtDir
	if mgmt == "" {
		mgmt = filepath.Join(rt, runtimeMgmtDir)
	}
	switch {
	case src == filepath.Join(rt, runtimeWorkloadDir, module):
		return true
	case filepath.Dir(src) == filepath.Join(rt, runtimeHostsDir):
		return true
	case module == modspec.AgentModule && src == filepath.Clean(mgmt):
		return true
	}
	return false
}

// CheckMounted checks a created task's binds, after runc mounted them and
// before the task runs: the check before the start resolved each bind
// source safely, but runc mounts by path, so a process that can write
// where a source lies (another module sharing the directory) could swap a
// directory for a link between that check and the mount. Each bind the
// task can see at its destination must be the very file the source
// resolves to now, below its root without links; else the start is
// refused (ErrPolicy). pid is the created task's init process.
func (p Policy) CheckMounted(module, image string, spec *specs.Spec, pid uint32) error {
	r := p.rulesFor(module, image)
	root, err := unix.Open(fmt.Sprintf("/proc/%d/root", pid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("module %s: open the created task's root: %w", module, err)
	}
	defer unix.Close(root)
	for i, m := range spec.Mounts {
		if !isBind(m) || p.RuntimeBind(module, m) || shadowed(spec.Mounts, i) {
			continue
		}
		field := fmt.Sprintf("mount %d on %s", i, modspec.Quote(m.Destination))
		src := filepath.Clean(m.Source)
		base, err := p.bindRoot(r, field, src, readOnly(m))
		if err != nil {
			return err
		}
		want, err := statBeneath(base, src)
		if err != nil {
			return fault.Wrap(fault.InvalidArgs, ErrPolicy, "module %s: %s: bind source %s %v", module, field, modspec.Quote(src), err)
		}
		got, err := statIn(root, m.Destination)
		if err != nil {
			return fmt.Errorf("module %s: %s: the mounted bind: %w", module, field, err)
		}
		if got.Dev != want.Dev || got.Ino != want.Ino {
			return fault.Wrap(fault.InvalidArgs, ErrPolicy, "module %s: %s: bind source %s changed while the module started (what was mounted is not what was checked); the runtime refuses the start", module, field, modspec.Quote(src))
		}
	}
	return nil
}

// shadowed reports whether a later mount covers mounts[i]'s destination.
func shadowed(mounts []specs.Mount, i int) bool {
	d := filepath.Clean(mounts[i].Destination)
	for _, m := range mounts[i+1:] {
		if modspec.Within(d, filepath.Clean(m.Destination)) {
			return true
		}
	}
	return false
}

// statBeneath stats src, which is root or below it, resolved from root
// without following any link.
func statBeneath(root, src string) (unix.Stat_t, error) {
	var st unix.Stat_t
	rel, err := filepath.Rel(root, src)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return st, fmt.Errorf("is not below %s", root)
	}
	rootfd, err := unix.Open(root, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return st, fmt.Errorf("cannot be opened: %w", err)
	}
	defer unix.Close(rootfd)
	fd, err := unix.Openat2(rootfd, rel, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS})
	if err != nil {
		return st, fmt.Errorf("cannot be opened below %s without following links: %w", root, err)
	}
	defer unix.Close(fd)
	err = unix.Fstat(fd, &st)
	return st, err
}

// statIn stats path inside a container whose root is held by rootfd,
// resolving links as the container sees them (as runc did for the mount).
func statIn(rootfd int, path string) (unix.Stat_t, error) {
	var st unix.Stat_t
	rel := strings.TrimPrefix(filepath.Clean("/"+path), "/")
	if rel == "" {
		rel = "."
	}
	fd, err := unix.Openat2(rootfd, rel, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
	if err != nil {
		return st, err
	}
	defer unix.Close(fd)
	err = unix.Fstat(fd, &st)
	return st, err
}

// FromConfig is the module policy modrtd's configuration sets.
func FromConfig(c *config.Config) Policy {
	never := append([]string{c.Homedir}, config.NeverBind...)
	if c.Containerd != "" {
		never = append(never, filepath.Dir(c.Containerd))
	}
	p := Policy{VolumesDir: filepath.Join(c.Homedir, "volumes"), ReadOnlyBinds: c.Policy.ReadOnlyBinds,
		Grants: c.Policy.Allow, Never: never, RuntimeDir: c.Homedir, HostNetwork: c.Policy.AllowHostNetwork}
	p.PidsLimit, p.MaxPidsLimit = c.Policy.PidsLimits()
	p.NoPidsController = !pidsController()
	p.MaxLogBytes, _ = c.Policy.LogLimit()          // checked by config.ParseConfig
	if filepath.Base(c.MgmtSocket) == "mgmt.sock" { // as modrtd binds it into edgeAgent
		p.MgmtDir = filepath.Dir(c.MgmtSocket)
	}
	return p
}
