package ctrd_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/modrt"
	rtconfig "github.com/edgev2/edgev2/modrt/config"
	"github.com/edgev2/edgev2/modrt/ctrd"
	"github.com/edgev2/edgev2/modrt/logstore"
	"github.com/edgev2/edgev2/modrt/modspec"
	rtpolicy "github.com/edgev2/edgev2/modrt/policy"
)

// A container made before modules ran under Docker's default seccomp
// profile (so without one: the host's keyrings in reach) gets the profile
// at its next start, unless the policy lets the module be privileged.
func TestContainerMadeWithoutSeccompGetsTheProfileAtItsNextStart(t *testing.T) {
	p := rtpolicy.Policy{Grants: []rtconfig.Grant{{Modules: []string{"admin"}, Privileged: true}}}
	rt := ctrd.StartRuntime(t, func(c *ctrd.RuntimeConfig) { c.Confine = modrt.Confine(p) })
	for _, tc := range []struct{ name, want string }{
		{"legacy", "Seccomp:\t2"}, // filter
		{"admin", "Seccomp:\t0"},  // privileged by the policy: as it was made
	} {
		out := startAndRead(t, rt, tc.name, nil, "grep Seccomp: /proc/self/status; sleep 600", "Seccomp:")
		if strings.TrimSpace(out) != tc.want {
			t.Errorf("%s runs with %q; want %q", tc.name, strings.TrimSpace(out), tc.want)
		}
	}
}

// A read-only bind of a container made before read-only binds were
// recursive ("rbind", "ro") is made read-only all the way down at its next
// start, which the start check then lets through: the module keeps
// running, and what is mounted below the source is read-only to it.
func TestContainerMadeWithAShallowReadOnlyBindStartsWithItReadOnlyAllTheWay(t *testing.T) {
	testenv.RequireRoot(t)
	root := filepath.Join(t.TempDir(), "shared")
	sub := filepath.Join(root, "sub")
	testenv.MountTmpfs(t, sub)
	p := rtpolicy.Policy{ReadOnlyBinds: []string{root}}
	rt := ctrd.StartRuntime(t, func(c *ctrd.RuntimeConfig) { c.Confine, c.StartCheck = modrt.Confine(p), p.CheckStart })
	out := startAndRead(t, rt, "reader", []oci.SpecOpts{
		oci.WithMounts([]specs.Mount{{Destination: "/ro", Type: "bind", Source: root, Options: []string{"rbind", "ro", "rslave"}}})},
		"if touch /ro/sub/planted 2>/dev/null; then echo WRITTEN; else echo REFUSED; fi; sleep 600", "E")
	if _, err := os.Stat(filepath.Join(sub, "planted")); err == nil || strings.TrimSpace(out) != "REFUSED" {
		t.Fatalf("the module's write below its read-only bind: %q", out)
	}
}

// A container made before modules had a pids limit (or with more than the
// policy allows now) gets the policy's default (or its maximum) at its next
// start, so a module made by an older modrtd cannot fork-bomb the host
// either; one made with a lower limit keeps it.
func TestContainerMadeWithoutAPidsLimitGetsThePolicysAtItsNextStart(t *testing.T) {
	p := rtpolicy.Policy{PidsLimit: 48, MaxPidsLimit: 64}
	rt := ctrd.StartRuntime(t, func(c *ctrd.RuntimeConfig) { c.Confine = modrt.Confine(p) })
	checkProcs(t, rt, []procsCase{
		{"legacy", nil, 24, 48}, // none: the default
		{"greedy", []oci.SpecOpts{oci.WithPidsLimit(500)}, 32, 64}, // above the maximum: the maximum
		{"modest", []oci.SpecOpts{oci.WithPidsLimit(20)}, 10, 20},  // below: its own
	})
}

// A container made before modules ran at oom_score_adj 0 (so at its shim's
// score, containerd's + 1) gets 0 at its next start.
func TestContainerMadeWithoutAnOOMScoreGetsZeroAtItsNextStart(t *testing.T) {
	rt := ctrd.StartRuntime(t, func(c *ctrd.RuntimeConfig) { c.Confine = modrt.Confine(rtpolicy.Policy{}) })
	out := startAndRead(t, rt, "legacy", nil, "echo OOM $(cat /proc/self/oom_score_adj); exec sleep 600", "OOM ")
	if strings.TrimSpace(out) != "OOM 0" {
		t.Fatalf("the module made without an oom_score_adj runs with %q; want \"OOM 0\"", out)
	}
}

// A container made with no pids limit on purpose (-1: the deployment asked
// for none where the policy has no maximum) starts without one; a container
// made before pids limits (none set) gets the default.
func TestContainerMadeWithNoPidsLimitOnPurposeKeepsItWhereThePolicyHasNoMaximum(t *testing.T) {
	p := rtpolicy.Policy{PidsLimit: 48}
	rt := ctrd.StartRuntime(t, func(c *ctrd.RuntimeConfig) { c.Confine = modrt.Confine(p) })
	checkProcs(t, rt, []procsCase{
		{"free", []oci.SpecOpts{oci.WithPidsLimit(-1)}, 100, 200},
		{"legacy", nil, 24, 48},
	})
}

// startAndRead creates and starts a container as an older modrtd might
// have made it (opts, then args run by sh -c) and returns its output once
// it shows marker (or what there is after 20 s).
func startAndRead(t *testing.T, rt *ctrd.Runtime, name string, opts []oci.SpecOpts, script, marker string) string {
	t.Helper()
	req := ctrd.CreateRequest{Name: name, Image: ctrd.TestImage, Restart: modspec.RestartNever,
		Opts: append(opts, oci.WithProcessArgs("sh", "-c", script))}
	if err := rt.Create(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	if err := rt.Start(t.Context(), name); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	var out string
	testenv.WaitFor(20*time.Second, func() bool {
		out, _, _ = ctrd.LogText(t, rt, name, logstore.Options{Tail: -1})
		return strings.Contains(out, marker)
	})
	return out
}

// forker starts 100 processes, then says how many the container has.
const forker = "( i=0; while [ $i -lt 100 ]; do sleep 600 & i=$((i+1)); done ) 2>/dev/null; set -- /proc/[0-9]*; echo PROCS $#; exec sleep 600"

type procsCase struct {
	name     string
	opts     []oci.SpecOpts
	min, max int
}

// checkProcs runs forker in a container per case and checks how many
// processes it got.
func checkProcs(t *testing.T, rt *ctrd.Runtime, cases []procsCase) {
	t.Helper()
	for _, tc := range cases {
		out := startAndRead(t, rt, tc.name, tc.opts, forker, "PROCS ")
		n, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(out), "PROCS "))
		if err != nil || n < tc.min || n > tc.max {
			t.Errorf("%s ran %q processes; want %d to %d", tc.name, out, tc.min, tc.max)
		}
	}
}
