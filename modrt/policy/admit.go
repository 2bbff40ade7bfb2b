package policy

import (
	"cmp"
	"fmt"
	"path/filepath"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/modrt/modspec"
)

// Extra is what the runtime itself adds to every module. It wins over the
// spec: the runtime's environment variables (IOTEDGE_*) cannot be overridden
// by config.env or createOptions.Env, and a spec mount at the destination of
// one of Mounts (edgeAgent binds its own idea of the workload socket) is
// replaced by the runtime's.
type Extra struct {
	Env      map[string]string
	Mounts   []specs.Mount
	Hostname string // used when createOptions has no Hostname
	// The image's ENTRYPOINT and CMD, for Docker's rules when createOptions
	// sets only one of Entrypoint and Cmd.
	ImageEntrypoint []string
	ImageCmd        []string
	// HostsFile, unless the module has no network, is bound at /etc/hosts
	// instead of the host's own (it names the modules).
	HostsFile string
	// ResolvConf, unless the module has no network, is bound at
	// /etc/resolv.conf instead of the host's own.
	ResolvConf string
	// Network is the default network's name, which NetworkMode may name
	// (default "azure-iot-edge").
	Network string
}

// Admission is what the policy lets one module spec have, in the
// runtime's terms; the backend turns it into its container options
// (modrt.OCIOpts). Zero fields leave the image's or the default's alone.
type Admission struct {
	Env      []string // merged: config.env, createOptions.Env, the runtime's
	Args     []string // the process's arguments, when ArgsSet
	ArgsSet  bool
	Cwd      string
	User     string
	Hostname string
	// HostNetwork and HostPID share the host's namespaces.
	HostNetwork, HostPID bool
	Mounts               []specs.Mount
	// Capabilities: with SetCaps, exactly Caps; otherwise DropCaps are
	// dropped first, then AddCaps added (Docker's order).
	SetCaps           bool
	Caps              []string
	DropCaps, AddCaps []string
	Privileged        bool
	ReadonlyRootfs    bool
	Memory            int64 // bytes; 0: no limit
	NanoCpus          int64 // billionths of a CPU; 0: no limit
	PidsLimit         int64 // processes and threads; 0: no limit
}

// Admit checks the spec against the policy and says what the module
// gets. Errors are fault.InvalidArgs naming the offending field (wrapping
// ErrPolicy when the policy, not the spec, refuses).
func (p Policy) Admit(s *modspec.Spec, x Extra) (*Admission, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	co := &s.Config.Settings.CreateOptions
	hc := &co.HostConfig
	a := &Admission{}
	image, _ := s.ImageRef()
	r := p.rulesFor(s.Name, image)

	a.Env = modspec.MergeEnv(s.Config.Env, co.Env, x.Env)
	if args, set := co.Args(x.ImageEntrypoint, x.ImageCmd); set {
		if len(args) == 0 {
			return nil, fault.New(fault.InvalidArgs, "module %s: createOptions.Entrypoint and Cmd leave no command to run", s.Name)
		}
		a.Args, a.ArgsSet = args, true
	}
	a.Cwd, a.User = co.WorkingDir, co.User
	a.Hostname = cmp.Or(co.Hostname, x.Hostname)

	mode, err := s.NetworkMode(x.Network)
	if err != nil {
		return nil, err
	}
	if mode == modspec.NetModeHost {
		if !p.AllowHostNetwork {
			return nil, fault.New(fault.InvalidArgs, "module %s: createOptions.HostConfig.NetworkMode \"host\" is forbidden by the runtime policy (an operator allows it per module with [policy] allow_host_network)", s.Name)
		}
		a.HostNetwork = true
	}
	// Otherwise runc makes the task a network namespace of its own: empty
	// (NetworkMode "none") or joined to the default network at start.
	if hc.PidMode == "host" {
		if !r.hostPID && !r.privileged {
			return nil, fault.Wrap(fault.InvalidArgs, ErrPolicy, "module %s: createOptions.HostConfig.PidMode \"host\" needs host_pid in a [[policy.allow]] entry for this module", s.Name)
		}
		a.HostPID = true
	}

	if a.Mounts, err = p.mounts(s, r, x, mode != modspec.NetModeNone); err != nil {
		return nil, err
	}

	for _, c := range hc.CapAdd {
		if !r.capAllowed(modspec.NormCap(c)) {
			return nil, r.capError("createOptions.HostConfig.CapAdd", c)
		}
	}
	add, addAll := modspec.NormCaps(hc.CapAdd)
	drop, dropAll := modspec.NormCaps(hc.CapDrop)
	switch {
	case addAll: // Docker: everything except what CapDrop names
		a.SetCaps = true
		for _, c := range modspec.KnownCaps {
			if !slices.Contains(drop, c) {
				a.Caps = append(a.Caps, c)
			}
		}
	case dropAll: // Docker: only what CapAdd names
		a.SetCaps, a.Caps = true, add
	default: // Docker drops first, so a capability in both lists stays
		a.DropCaps, a.AddCaps = drop, add
	}
	if hc.Privileged {
		if !r.privileged {
			return nil, fault.Wrap(fault.InvalidArgs, ErrPolicy, "module %s: createOptions.HostConfig.Privileged (every capability and device: host root) needs privileged in a [[policy.allow]] entry for this module", s.Name)
		}
		a.Privileged = true
	}
	a.ReadonlyRootfs = hc.ReadonlyRootfs
	a.Memory, a.NanoCpus = hc.Memory, hc.NanoCpus
	if err := p.checkLogSize(s); err != nil {
		return nil, err
	}
	switch {
	case hc.PidsLimit == 0:
		a.PidsLimit = p.PidsLimit
	case p.MaxPidsLimit == 0: // no maximum: as asked, -1 for none
		a.PidsLimit = max(hc.PidsLimit, 0)
	case hc.PidsLimit < 0 || hc.PidsLimit > p.MaxPidsLimit:
		what := fmt.Sprintf("%d", hc.PidsLimit)
		if hc.PidsLimit < 0 {
			what = "-1 (no limit)"
		}
		return nil, fault.Wrap(fault.InvalidArgs, ErrPolicy, "module %s: createOptions.HostConfig.PidsLimit %s is above what the runtime policy allows, %d processes and threads ([policy] max_pids_limit)", s.Name, what, p.MaxPidsLimit)
	default:
		a.PidsLimit = hc.PidsLimit
	}
	return a, nil
}

// mounts builds the container's mounts: the spec's, minus those the runtime
// replaces, plus the runtime's and, with host networking, the host's
// /etc/hosts and /etc/resolv.conf (read-only, unless the spec binds its own).
func (p Policy) mounts(s *modspec.Spec, r rules, x Extra, hostNet bool) ([]specs.Mount, error) {
	ums, err := s.Config.Settings.CreateOptions.HostConfig.UserMounts()
	if err != nil {
		return nil, fault.Wrap(fault.InvalidArgs, err, "module %s: %s", s.Name, fault.Message(err))
	}
	runtimeDest := make(map[string]bool, len(x.Mounts))
	for _, m := range x.Mounts {
		runtimeDest[filepath.Clean(m.Destination)] = true
	}
	var out []specs.Mount
	taken := make(map[string]bool)
	for _, um := range ums {
		if underRuntimeMount(um.Mount.Destination, runtimeDest) {
			continue
		}
		if um.Mount.Type == "bind" {
			if err := p.checkBind(r, um.Field, um.Mount.Source, readOnly(um.Mount)); err != nil {
				return nil, err
			}
		}
		out = append(out, um.Mount)
		taken[um.Mount.Destination] = true
	}
	out = append(out, x.Mounts...)
	if hostNet {
		for _, f := range []string{"/etc/hosts", "/etc/resolv.conf"} {
			if !taken[f] && !runtimeDest[f] {
				src := f
				if f == "/etc/hosts" && x.HostsFile != "" {
					src = x.HostsFile
				}
				if f == "/etc/resolv.conf" && x.ResolvConf != "" {
					src = x.ResolvConf
				}
				out = append(out, specs.Mount{Destination: f, Type: "bind", Source: src, Options: []string{"bind", "ro", "rprivate"}}) // files: nothing below them
			}
		}
	}
	return out, nil
}

// underRuntimeMount reports whether dest is at or below one of the
// runtime's mounts: edgeAgent binds its own idea of the workload socket
// (/var/run/iotedge/workload.sock) inside the runtime's socket directory.
func underRuntimeMount(dest string, runtimeDest map[string]bool) bool {
	for d := range runtimeDest {
		if modspec.Within(dest, d) {
			return true
		}
	}
	return false
}

// checkLogSize refuses LogConfig that would let the module's output take
// more disk than the policy allows: the module decides how much it writes,
// so its rotation is all that bounds it.
func (p Policy) checkLogSize(s *modspec.Spec) error {
	size, files, err := s.LogLimits()
	if err != nil || p.MaxLogBytes == 0 {
		return err
	}
	size, files = cmp.Or(size, modspec.DefaultLogMaxBytes), cmp.Or(files, modspec.DefaultLogFiles)
	if size > p.MaxLogBytes/int64(files) {
		return fault.Wrap(fault.InvalidArgs, ErrPolicy, "module %s: createOptions.HostConfig.LogConfig asks for %d files of %d bytes, more than the runtime policy allows a module's log, %d bytes ([policy] max_log_size)", s.Name, files, size, p.MaxLogBytes)
	}
	return nil
}
