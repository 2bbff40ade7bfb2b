package modrt

import (
	"context"
	"slices"

	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/contrib/seccomp"
	"github.com/containerd/containerd/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/edgev2/edgev2/modrt/modspec"
	"github.com/edgev2/edgev2/modrt/policy"
)

// OCIOpts checks the spec against the policy and translates what it
// admits into containerd spec options. Apply them after
// oci.WithImageConfig (they override the image's command, working
// directory and user, and add to its environment). Errors are
// fault.InvalidArgs naming the offending field.
func OCIOpts(s *modspec.Spec, p policy.Policy, x policy.Extra) ([]oci.SpecOpts, error) {
	a, err := p.Admit(s, x)
	if err != nil {
		return nil, err
	}
	var opts []oci.SpecOpts
	if len(a.Env) > 0 {
		opts = append(opts, oci.WithEnv(a.Env))
	}
	if a.ArgsSet {
		opts = append(opts, oci.WithProcessArgs(a.Args...))
	}
	if a.Cwd != "" {
		opts = append(opts, oci.WithProcessCwd(a.Cwd))
	}
	if a.User != "" {
		opts = append(opts, oci.WithUser(a.User))
	}
	if a.Hostname != "" {
		opts = append(opts, oci.WithHostname(a.Hostname))
	}
	if a.HostNetwork {
		opts = append(opts, oci.WithHostNamespace(specs.NetworkNamespace))
	}
	if a.HostPID {
		opts = append(opts, oci.WithHostNamespace(specs.PIDNamespace))
	}
	if len(a.Mounts) > 0 {
		opts = append(opts, oci.WithMounts(a.Mounts))
	}
	switch {
	case a.SetCaps:
		opts = append(opts, oci.WithCapabilities(a.Caps))
	default:
		if len(a.DropCaps) > 0 {
			opts = append(opts, oci.WithDroppedCapabilities(a.DropCaps))
		}
		if len(a.AddCaps) > 0 {
			opts = append(opts, oci.WithAddedCapabilities(a.AddCaps))
		}
	}
	if a.Privileged {
		opts = append(opts, oci.WithPrivileged, oci.WithAllDevicesAllowed, oci.WithHostDevices)
	}
	if a.ReadonlyRootfs {
		opts = append(opts, oci.WithRootFSReadonly())
	}
	if a.Memory > 0 {
		opts = append(opts, oci.WithMemoryLimit(uint64(a.Memory)))
	}
	if a.NanoCpus > 0 {
		const period = 100000 // µs, Docker's
		opts = append(opts, oci.WithCPUCFS(a.NanoCpus*period/1e9, period))
	}
	switch {
	case p.NoPidsController:
		// runc would fail any pids limit: none, as Docker does.
	case a.PidsLimit > 0:
		opts = append(opts, oci.WithPidsLimit(a.PidsLimit))
	default:
		// -1, none, written down: a container without a pids limit is
		// one made before them, which Confine gives the default.
		opts = append(opts, oci.WithPidsLimit(-1))
	}
	opts = append(opts, withOOMScoreAdj)
	if !a.Privileged {
		// Docker's default seccomp profile, as Docker runs every container
		// not privileged: keyrings (not namespaced: a module's root is the
		// host's, keyring and all), user namespaces, kexec, ... stay out of
		// reach. Last: it allows what the capabilities set above need.
		opts = append(opts, seccomp.WithDefaultProfile())
	}
	return opts, nil
}

// Confine is the runtime's ctrd.RuntimeConfig.Confine under policy p, for
// containers made by an older modrtd: one made before modules ran under
// Docker's default seccomp profile (OCIOpts) gets it at its next start,
// unless the policy lets the module be privileged (a privileged module
// runs without one); and its read-only binds become read-only all the way
// down, as modspec makes them now ("rro" on a recursive bind, private
// propagation), so the start check need not refuse them; and one without
// a pids limit (or above the policy's maximum, lowered since) gets the
// policy's default (or maximum); and one without an oom_score_adj gets 0.
func Confine(p policy.Policy) func(module, image string, spec *specs.Spec) (bool, error) {
	return func(module, image string, spec *specs.Spec) (bool, error) {
		changed := false
		for i, m := range spec.Mounts {
			if !slices.Contains(m.Options, "ro") || !(m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind")) {
				continue
			}
			opts := make([]string, 0, len(m.Options)+1)
			for _, o := range m.Options {
				switch o {
				case "shared", "rshared", "slave", "rslave":
					o = "rprivate"
				}
				opts = append(opts, o)
			}
			switch {
			case p.RuntimeBind(module, m) && slices.Contains(opts, "rbind"):
				// The runtime's own directories have nothing below them:
				// bound as now, not recursive, without "rro" (Linux 5.12).
				opts[slices.Index(opts, "rbind")] = "bind"
			case slices.Contains(opts, "rbind") && !slices.Contains(opts, "rro"):
				opts = append(opts, "rro")
			}
			if !slices.Equal(opts, m.Options) {
				spec.Mounts[i].Options, changed = opts, true
			}
		}
		switch {
		case p.NoPidsController:
			// A container made where the controller was (or by a modrtd
			// that set -1 regardless) would not start: runc fails any
			// pids limit here.
			if spec.Linux != nil && spec.Linux.Resources != nil && spec.Linux.Resources.Pids != nil {
				spec.Linux.Resources.Pids, changed = nil, true
			}
		case spec.Linux != nil:
			var limit *int64
			if r := spec.Linux.Resources; r != nil && r.Pids != nil {
				limit = &r.Pids.Limit
			}
			if n := p.Pids(limit); n > 0 {
				if err := oci.WithPidsLimit(n)(context.Background(), nil, nil, spec); err != nil {
					return false, err
				}
				changed = true
			}
		}
		if spec.Process != nil && spec.Process.OOMScoreAdj == nil {
			withOOMScoreAdj(context.Background(), nil, nil, spec)
			changed = true
		}
		if spec.Linux != nil && spec.Linux.Seccomp == nil && !p.Privileged(module, image) {
			if err := seccomp.WithDefaultProfile()(context.Background(), nil, nil, spec); err != nil {
				return false, err
			}
			changed = true
		}
		return changed, nil
	}
}

// withOOMScoreAdj runs the module at oom_score_adj 0, as Docker runs its
// containers. Without it a module inherits its shim's score, containerd's
// + 1: -998 under Debian's containerd.service (OOMScoreAdjust=-999), so a
// module eating the host's memory would be the last the kernel kills, after
// keyd, modrtd and sshd.
func withOOMScoreAdj(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
	if s.Process == nil {
		s.Process = &specs.Process{}
	}
	zero := 0
	s.Process.OOMScoreAdj = &zero
	return nil
}
