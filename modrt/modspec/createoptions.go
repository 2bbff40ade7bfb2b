package modspec

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/edgev2/edgev2/fault"
)

// Labels returns createOptions.Labels, for the container's labels; the
// runtime adds its own under "org.edgev2.", which specs may not use.
func (s *Spec) Labels() map[string]string {
	l := s.Config.Settings.CreateOptions.Labels
	if len(l) == 0 {
		return nil
	}
	out := make(map[string]string, len(l))
	for k, v := range l {
		out[k] = v
	}
	return out
}

// LogLimits returns the log rotation asked for by HostConfig.LogConfig
// (driver json-file or local, options max-size and max-file). Zero means not
// set: the runtime uses its default. Logs are always size-capped, so
// "max-size": "-1" is refused.
func (s *Spec) LogLimits() (maxBytes int64, files int, err error) {
	return s.Config.Settings.CreateOptions.HostConfig.LogConfig.limits()
}

func (lc LogConfig) limits() (maxBytes int64, files int, err error) {
	switch lc.Type {
	case "", "json-file", "local":
	default:
		return 0, 0, fault.New(fault.InvalidArgs, "createOptions.HostConfig.LogConfig.Type %s is not supported (want json-file or local; edgev2 keeps rotated files itself)", Quote(lc.Type))
	}
	for _, k := range sortedKeys(lc.Config) {
		v := lc.Config[k]
		switch k {
		case "max-size":
			n, err := parseSize(v)
			if err != nil || n <= 0 {
				return 0, 0, fault.New(fault.InvalidArgs, "createOptions.HostConfig.LogConfig.Config.max-size %s is not a positive size like 10m", Quote(v))
			}
			maxBytes = n
		case "max-file":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1000 {
				return 0, 0, fault.New(fault.InvalidArgs, "createOptions.HostConfig.LogConfig.Config.max-file %s is not a number from 1 to 1000", Quote(v))
			}
			files = n
		default:
			return 0, 0, fault.New(fault.InvalidArgs, "createOptions.HostConfig.LogConfig.Config.%s is not supported (only max-size and max-file)", Quote(k))
		}
	}
	return maxBytes, files, nil
}

var sizePattern = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?) *([kKmMgGtT]?)(?:[iI]?[bB])?$`)

// A module's log rotation when LogConfig sets none: at most
// DefaultLogFiles files of DefaultLogMaxBytes.
const (
	DefaultLogMaxBytes = 10 << 20
	DefaultLogFiles    = 3
)

// ParseSize reads a size as LogConfig's max-size does: 1024, 10k, 10m, 1g.
func ParseSize(v string) (int64, error) { return parseSize(v) }

// parseSize reads Docker's sizes: 1024, 10k, 10m, 1.5g, 10MiB, 10mb
// (always binary multiples, as Docker's RAMInBytes).
func parseSize(v string) (int64, error) {
	m := sizePattern.FindStringSubmatch(strings.TrimSpace(v))
	if m == nil {
		return 0, errors.New("bad size")
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, err
	}
	mult := map[string]float64{"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[strings.ToLower(m[2])]
	f *= mult
	if f >= math.MaxInt64/2 {
		return 0, errors.New("size too large")
	}
	return int64(f), nil
}

// normalise drops empty lists and maps, so a spec marshals the same after a
// round trip. Cmd and Entrypoint keep them: an empty Entrypoint means something.
func (co *CreateOptions) normalise() {
	hc := &co.HostConfig
	for _, l := range []*[]string{&co.Env, &hc.Binds, &hc.CapAdd, &hc.CapDrop} {
		if len(*l) == 0 {
			*l = nil
		}
	}
	if len(hc.Mounts) == 0 {
		hc.Mounts = nil
	}
	if len(co.Labels) == 0 {
		co.Labels = nil
	}
	if len(hc.LogConfig.Config) == 0 {
		hc.LogConfig.Config = nil
	}
}

const maxLabelSize = 4096 // containerd's limit on a label's key plus value

var (
	hostnamePattern = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)
	userPattern     = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,255}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,255})?$`)
)

// ContainerdLabel reports whether a container label is in containerd's own
// namespaces, which it acts on: its restart monitor starts the task of a
// container labelled containerd.io/restart.status=running itself, its
// output going to the host file or program containerd.io/restart.logpath
// or .loguri (binary://) names, run as root.
func ContainerdLabel(k string) bool {
	k = strings.ToLower(k)
	return strings.HasPrefix(k, "containerd.io/") || strings.HasPrefix(k, "io.containerd.")
}

// validate checks what createOptions ask for, independently of policy.
func (co *CreateOptions) validate() error {
	if co.Hostname != "" && (len(co.Hostname) > 64 || !hostnamePattern.MatchString(co.Hostname)) {
		return fault.New(fault.InvalidArgs, "createOptions.Hostname %s is not a host name", Quote(co.Hostname))
	}
	if co.User != "" && !userPattern.MatchString(co.User) {
		return fault.New(fault.InvalidArgs, "createOptions.User %s is not one of uid, uid:gid, user, user:group", Quote(co.User))
	}
	for i, e := range co.Env {
		k, v, ok := strings.Cut(e, "=")
		if !ok {
			return fault.New(fault.InvalidArgs, "createOptions.Env[%d] %s is not KEY=value", i, envEntryShown(e))
		}
		if err := validateEnvKey(k); err != nil {
			return fault.New(fault.InvalidArgs, "createOptions.Env[%d]: %s", i, err)
		}
		if strings.IndexByte(v, 0) >= 0 {
			return fault.New(fault.InvalidArgs, "createOptions.Env %s has a NUL byte in its value", Quote(k))
		}
	}
	for _, l := range []struct {
		name string
		args []string
	}{{"Cmd", co.Cmd}, {"Entrypoint", co.Entrypoint}} {
		for i, a := range l.args {
			if strings.IndexByte(a, 0) >= 0 {
				return fault.New(fault.InvalidArgs, "createOptions.%s[%d] has a NUL byte", l.name, i)
			}
		}
	}
	if co.WorkingDir != "" {
		if err := CheckPath(co.WorkingDir); err != nil {
			return fault.New(fault.InvalidArgs, "createOptions.WorkingDir %s: %s", Quote(co.WorkingDir), err)
		}
	}
	for _, k := range sortedKeys(co.Labels) {
		v := co.Labels[k]
		switch {
		case k == "" || strings.IndexByte(k, 0) >= 0 || strings.IndexByte(v, 0) >= 0:
			return fault.New(fault.InvalidArgs, "createOptions.Labels %s: empty key or NUL byte", Quote(k))
		case strings.HasPrefix(k, reservedLabelPrefix):
			return fault.New(fault.InvalidArgs, "createOptions.Labels %s: labels starting with %q belong to the runtime", Quote(k), reservedLabelPrefix)
		case ContainerdLabel(k):
			return fault.New(fault.InvalidArgs, "createOptions.Labels %s: labels starting with %q or %q belong to containerd, which acts on them (containerd.io/restart.* starts the task itself and runs its log program as root)", Quote(k), "containerd.io/", "io.containerd.")
		case len(k)+len(v) > maxLabelSize:
			return fault.New(fault.InvalidArgs, "createOptions.Labels %s: key and value are %d bytes, more than containerd's %d", Quote(k), len(k)+len(v), maxLabelSize)
		}
	}
	for _, p := range sortedKeys(co.ExposedPorts) {
		if _, _, err := parsePortProto(p); err != nil {
			return fault.New(fault.InvalidArgs, "createOptions.ExposedPorts %s: %s", Quote(p), err)
		}
	}
	return co.HostConfig.validate(len(co.ExposedPorts) > 0)
}

func (hc *HostConfig) validate(exposesPorts bool) error {
	if _, err := hc.UserMounts(); err != nil {
		return err
	}
	for _, l := range []struct {
		name string
		caps []string
	}{{"CapAdd", hc.CapAdd}, {"CapDrop", hc.CapDrop}} {
		for _, c := range l.caps {
			if n := NormCap(c); n != "ALL" && !contains(KnownCaps, n) {
				return fault.New(fault.InvalidArgs, "createOptions.HostConfig.%s %s is not a Linux capability", l.name, Quote(c))
			}
		}
	}
	const minMemory = 6 << 20 // Docker's minimum
	if hc.Memory < 0 || (hc.Memory > 0 && hc.Memory < minMemory) {
		return fault.New(fault.InvalidArgs, "createOptions.HostConfig.Memory %d is below the minimum of %d bytes (6 MiB)", hc.Memory, minMemory)
	}
	if n := int64(runtime.NumCPU()); hc.NanoCpus < 0 || (hc.NanoCpus > 0 && (hc.NanoCpus < 1e7 || hc.NanoCpus > n*1e9)) {
		return fault.New(fault.InvalidArgs, "createOptions.HostConfig.NanoCpus %d is outside 0.01 to %d CPUs (10000000 to %d)", hc.NanoCpus, n, n*1e9)
	}
	if hc.PidsLimit < -1 {
		return fault.New(fault.InvalidArgs, "createOptions.HostConfig.PidsLimit %d is not a pids limit: a number of processes and threads, or -1 for none", hc.PidsLimit)
	}
	switch hc.NetworkMode {
	case "", NetModeHost:
	case NetModeNone:
		if exposesPorts || !zeroJSON(hc.PortBindings) {
			return fault.New(fault.InvalidArgs, "createOptions.ExposedPorts and HostConfig.PortBindings need NetworkMode \"azure-iot-edge\" (the default network) or \"host\"; a module with NetworkMode \"none\" has no network")
		}
	case "bridge":
		return fault.New(fault.InvalidArgs, "createOptions.HostConfig.NetworkMode \"bridge\" (Docker's default bridge) does not exist here: modules use the default network (NetworkMode empty or \"azure-iot-edge\"), \"host\" or \"none\"")
	default:
		if ValidateName(hc.NetworkMode) != nil {
			return fault.New(fault.InvalidArgs, "createOptions.HostConfig.NetworkMode %s is not a network name", Quote(hc.NetworkMode))
		}
	}
	if _, err := hc.portMappings(); err != nil {
		return err
	}
	switch hc.PidMode {
	case "", "host":
	default:
		return fault.New(fault.InvalidArgs, "createOptions.HostConfig.PidMode %s is not supported (want \"host\" or nothing)", Quote(hc.PidMode))
	}
	_, _, err := hc.LogConfig.limits()
	return err
}

// UserMount is one bind or tmpfs asked for by the spec, with the field that
// asked, for messages.
type UserMount struct {
	Field string
	Mount specs.Mount
}

var propagations = []string{"private", "rprivate", "shared", "rshared", "slave", "rslave"}

// UserMounts turns Binds and Mounts into OCI mounts.
func (hc *HostConfig) UserMounts() ([]UserMount, error) {
	var out []UserMount
	for i, b := range hc.Binds {
		f := fmt.Sprintf("createOptions.HostConfig.Binds[%d] %s", i, Quote(b))
		parts := strings.Split(b, ":")
		if len(parts) < 2 || len(parts) > 3 {
			if len(parts) == 1 {
				return nil, fault.New(fault.InvalidArgs, "%s: anonymous volumes are not supported; bind a host directory as source:destination", f)
			}
			return nil, fault.New(fault.InvalidArgs, "%s is not source:destination[:options]", f)
		}
		src, dst := parts[0], parts[1]
		if src != "" && !strings.HasPrefix(src, "/") {
			return nil, fault.New(fault.InvalidArgs, "%s: named volumes are not supported yet; bind an absolute host path", f)
		}
		ro, prop := false, ""
		if len(parts) == 3 {
			seenRW := false
			for _, o := range strings.Split(parts[2], ",") {
				switch {
				case o == "ro" || o == "rw":
					if seenRW {
						return nil, fault.New(fault.InvalidArgs, "%s repeats ro/rw", f)
					}
					seenRW, ro = true, o == "ro"
				case contains(propagations, o):
					if prop != "" {
						return nil, fault.New(fault.InvalidArgs, "%s repeats the propagation mode", f)
					}
					prop = o
				case o == "z" || o == "Z":
					return nil, fault.New(fault.InvalidArgs, "%s: SELinux relabelling (z, Z) is not supported", f)
				default:
					return nil, fault.New(fault.InvalidArgs, "%s: option %s is not one of ro, rw, %s", f, Quote(o), strings.Join(propagations, ", "))
				}
			}
		}
		m, err := bindMount(src, dst, ro, prop, false)
		if err != nil {
			return nil, fault.New(fault.InvalidArgs, "%s: %s", f, err)
		}
		out = append(out, UserMount{f, m})
	}
	for i, mnt := range hc.Mounts {
		f := fmt.Sprintf("createOptions.HostConfig.Mounts[%d]", i)
		var m specs.Mount
		switch mnt.Type {
		case "bind":
			if mnt.TmpfsOptions != nil {
				return nil, fault.New(fault.InvalidArgs, "%s: TmpfsOptions on a bind mount", f)
			}
			var prop string
			var nonRec bool
			if mnt.BindOptions != nil {
				prop, nonRec = mnt.BindOptions.Propagation, mnt.BindOptions.NonRecursive
				if prop != "" && !contains(propagations, prop) {
					return nil, fault.New(fault.InvalidArgs, "%s.BindOptions.Propagation %s is not one of %s", f, Quote(prop), strings.Join(propagations, ", "))
				}
			}
			var err error
			if m, err = bindMount(mnt.Source, mnt.Target, mnt.ReadOnly, prop, nonRec); err != nil {
				return nil, fault.New(fault.InvalidArgs, "%s (%s:%s): %s", f, Quote(mnt.Source), Quote(mnt.Target), err)
			}
		case "tmpfs":
			if mnt.Source != "" || mnt.BindOptions != nil {
				return nil, fault.New(fault.InvalidArgs, "%s: a tmpfs mount takes no Source or BindOptions", f)
			}
			if err := CheckDest(mnt.Target); err != nil {
				return nil, fault.New(fault.InvalidArgs, "%s.Target %s: %s", f, Quote(mnt.Target), err)
			}
			opts := []string{"nosuid", "nodev", "noexec"}
			if mnt.ReadOnly {
				opts = append(opts, "ro")
			}
			if t := mnt.TmpfsOptions; t != nil {
				if t.SizeBytes < 0 {
					return nil, fault.New(fault.InvalidArgs, "%s.TmpfsOptions.SizeBytes %d is negative", f, t.SizeBytes)
				}
				if t.SizeBytes > 0 {
					opts = append(opts, "size="+strconv.FormatInt(t.SizeBytes, 10))
				}
				if t.Mode > 0o7777 {
					return nil, fault.New(fault.InvalidArgs, "%s.TmpfsOptions.Mode %d is not a permission mode (0 to 0o7777)", f, t.Mode)
				}
				if t.Mode != 0 {
					opts = append(opts, fmt.Sprintf("mode=%o", t.Mode))
				}
			}
			m = specs.Mount{Destination: filepath.Clean(mnt.Target), Type: "tmpfs", Source: "tmpfs", Options: opts}
		case "volume":
			return nil, fault.New(fault.InvalidArgs, "%s: named volumes are not supported yet; bind a host directory", f)
		default:
			return nil, fault.New(fault.InvalidArgs, "%s.Type %s is not supported (want bind or tmpfs)", f, Quote(mnt.Type))
		}
		out = append(out, UserMount{f, m})
	}
	seen := make(map[string]string, len(out))
	for _, um := range out {
		if prev, ok := seen[um.Mount.Destination]; ok {
			return nil, fault.New(fault.InvalidArgs, "%s and %s both mount on %s", prev, um.Field, Quote(um.Mount.Destination))
		}
		seen[um.Mount.Destination] = um.Field
	}
	return out, nil
}

func bindMount(src, dst string, ro bool, prop string, nonRecursive bool) (specs.Mount, error) {
	if err := CheckPath(src); err != nil {
		return specs.Mount{}, fmt.Errorf("source: %w", err)
	}
	if err := CheckDest(dst); err != nil {
		return specs.Mount{}, fmt.Errorf("destination: %w", err)
	}
	if ro && prop != "" && prop != "private" && prop != "rprivate" {
		// Mounts propagated in later keep their own flags: "ro" or "rro"
		// made only what was there at the start read-only.
		return specs.Mount{}, fmt.Errorf("propagation %s on a read-only bind: what the host mounts below the source later would be writable in the module; use private or rprivate", Quote(prop))
	}
	kind, mode := "rbind", "rw"
	if nonRecursive {
		kind = "bind"
	}
	if ro {
		mode = "ro"
	}
	opts := []string{kind, mode, cmp.Or(prop, "rprivate")}
	if ro && !nonRecursive {
		// "ro" makes only the bound mount read-only: file systems mounted
		// below the source would stay writable through it.
		opts = append(opts, "rro")
	}
	return specs.Mount{
		Destination: filepath.Clean(dst),
		Type:        "bind",
		Source:      filepath.Clean(src),
		Options:     opts,
	}, nil
}

// CheckPath accepts absolute paths without ".." elements or NUL bytes.
func CheckPath(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case !strings.HasPrefix(p, "/"):
		return errors.New("not an absolute path")
	case strings.IndexByte(p, 0) >= 0:
		return errors.New("NUL byte in path")
	}
	for _, e := range strings.Split(p, "/") {
		if e == ".." {
			return errors.New("\"..\" in path")
		}
	}
	return nil
}

func CheckDest(p string) error {
	if err := CheckPath(p); err != nil {
		return err
	}
	if filepath.Clean(p) == "/" {
		return errors.New("cannot mount over the container's root")
	}
	return nil
}

// Within reports whether path is dir or below it (both clean).
func Within(path, dir string) bool {
	return path == dir || dir == "/" || strings.HasPrefix(path, dir+"/")
}

// MergeEnv orders variables as first seen; later sources win: config.env,
// then createOptions.Env (as aziot-edged merges them), then the runtime's.
func MergeEnv(cfg []EnvVar, co []string, rt map[string]string) []string {
	var keys []string
	vals := make(map[string]string)
	set := func(k, v string) {
		if _, ok := vals[k]; !ok {
			keys = append(keys, k)
		}
		vals[k] = v
	}
	for _, e := range cfg {
		set(e.Key, e.Value)
	}
	for _, e := range co {
		k, v, _ := strings.Cut(e, "=")
		set(k, v)
	}
	for _, k := range sortedKeys(rt) {
		set(k, rt[k])
	}
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k + "=" + vals[k]
	}
	return out
}

// Args applies Docker's rules: an Entrypoint (even an empty one) replaces the
// image's; without a Cmd, an empty Entrypoint keeps the image's CMD and a
// non-empty one runs alone; [""] means empty. set is false when createOptions
// names neither, leaving the image's command alone.
func (co *CreateOptions) Args(imageEntrypoint, imageCmd []string) (args []string, set bool) {
	if co.Entrypoint == nil && co.Cmd == nil {
		return nil, false
	}
	entry, cmd := co.Entrypoint, co.Cmd
	if len(entry) == 1 && entry[0] == "" {
		entry = []string{}
	}
	if len(entry) == 0 {
		if len(cmd) == 0 {
			cmd = imageCmd
		}
		if entry == nil {
			entry = imageEntrypoint
		}
	}
	args = append(append([]string{}, entry...), cmd...)
	return args, true
}

// NormCap turns Docker's "net_admin" or "CAP_NET_ADMIN" into "CAP_NET_ADMIN".
func NormCap(c string) string {
	c = strings.ToUpper(strings.TrimSpace(c))
	if c == "ALL" || strings.HasPrefix(c, "CAP_") {
		return c
	}
	return "CAP_" + c
}

func NormCaps(in []string) (caps []string, all bool) {
	for _, c := range in {
		n := NormCap(c)
		if n == "ALL" {
			all = true
			continue
		}
		if !contains(caps, n) {
			caps = append(caps, n)
		}
	}
	return caps, all
}

// KnownCaps are Linux's capabilities up to 6.x (CAP_CHECKPOINT_RESTORE, 40).
var KnownCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
	"CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
	"CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
	"CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// sortedKeys is m's keys in order.
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// envEntryShown is what an error says of an Env entry without '=': a bare
// name whole; the name of KEY:value or "KEY value" (a typo for '='), not the
// value; nothing of anything else, which may be a secret pasted alone. A
// name is what environment variables are named by convention (upper case,
// digits, '_'), so a token pasted alone ("ghp_x1Y…") is not one.
func envEntryShown(e string) string {
	name := e
	if i := strings.IndexAny(e, ": \t"); i > 0 {
		name = e[:i]
	}
	if len(name) > 64 || strings.IndexFunc(name, func(r rune) bool {
		return !(r == '_' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	}) >= 0 {
		return "(not shown: it may hold a secret)"
	}
	if name == e {
		return Quote(e)
	}
	return "(" + Quote(name) + " and a value not shown)"
}
