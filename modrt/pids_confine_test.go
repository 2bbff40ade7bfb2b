package modrt_test

import (
	"testing"

	"github.com/containerd/containerd/containers"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/edgev2/edgev2/modrt"
	"github.com/edgev2/edgev2/modrt/modspec"
	"github.com/edgev2/edgev2/modrt/policy"
)

// A deployment that asks for no pids limit (PidsLimit -1) where the policy
// has no maximum (max_pids_limit -1) runs without one: the start's
// migration (Confine) must not take the container for one made before
// pids limits and give it the default; and where the policy has a maximum
// again, the same container gets that maximum at its next start.
func TestPidsLimitMinusOneIsKeptAtStartUnlessThePolicyHasAMaximum(t *testing.T) {
	free := policy.Policy{PidsLimit: 1024} // default_pids_limit 1024, max_pids_limit -1
	spec := specUnder(t, "free", `{"PidsLimit":-1}`, free)
	if _, err := modrt.Confine(free)("free", "edgev2.test/busybox:1", spec); err != nil {
		t.Fatal(err)
	}
	if r := spec.Linux.Resources; r != nil && r.Pids != nil && r.Pids.Limit > 0 {
		t.Fatalf("PidsLimit -1 under a policy without maximum starts with pids limit %d; want none", r.Pids.Limit)
	}
	capped := policy.Policy{PidsLimit: 1024, MaxPidsLimit: 4096}
	if _, err := modrt.Confine(capped)("free", "edgev2.test/busybox:1", spec); err != nil {
		t.Fatal(err)
	}
	if r := spec.Linux.Resources; r == nil || r.Pids == nil || r.Pids.Limit != 4096 {
		t.Fatalf("under a maximum of 4096 again, the container made with no limit starts with %+v; want 4096", spec.Linux.Resources)
	}
}

// Where the kernel's pids cgroup controller is not available (a kernel
// without it, a container it is not delegated to, as the booted Debian
// of the system test under a cgroup v1 host), runc fails a container with
// any pids limit, -1 included: modules get none, at create and at start
// (a container made with one loses it), as Docker discards --pids-limit.
func TestWithoutThePidsControllerModulesGetNoPidsLimit(t *testing.T) {
	p := policy.Policy{PidsLimit: 1024, NoPidsController: true}
	for _, co := range []string{`{}`, `{"PidsLimit":-1}`, `{"PidsLimit":100}`} {
		spec := specUnder(t, "m", co, p)
		if r := spec.Linux.Resources; r != nil && r.Pids != nil {
			t.Errorf("createOptions %s without a pids controller: pids limit %d written; want none", co, r.Pids.Limit)
		}
		spec.Linux.Resources = &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: 100}} // made where there was one
		changed, err := modrt.Confine(p)("m", "edgev2.test/busybox:1", spec)
		if err != nil {
			t.Fatal(err)
		}
		if !changed || spec.Linux.Resources.Pids != nil {
			t.Errorf("a container with a pids limit, started without a pids controller: changed %v, pids %+v; want none", changed, spec.Linux.Resources.Pids)
		}
	}
}

// specUnder is the OCI spec modrtd makes for module (createOptions co)
// under policy p.
func specUnder(t *testing.T, module, co string, p policy.Policy) *specs.Spec {
	t.Helper()
	s, err := modspec.ParseSpec([]byte(specCO(module, "edgev2.test/busybox:1", "never", co, "true")))
	if err != nil {
		t.Fatal(err)
	}
	opts, err := modrt.OCIOpts(s, p, policy.Extra{})
	if err != nil {
		t.Fatal(err)
	}
	spec := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{}}, Linux: &specs.Linux{}}
	for _, o := range opts {
		if err := o(t.Context(), nil, &containers.Container{}, spec); err != nil {
			t.Fatal(err)
		}
	}
	return spec
}
