package ctrd_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/containerd/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/modrt/ctrd"
	"github.com/edgev2/edgev2/modrt/logstore"
	"github.com/edgev2/edgev2/modrt/modspec"
	rtpolicy "github.com/edgev2/edgev2/modrt/policy"
)

// A module that can write where another module's bind source lies (both
// bind a shared directory, or one binds the other's parent) may swap the
// source for a link between the start check and runc's mount, which goes
// by path. The test wins that race for the attacker every time: the swap
// happens right after the start check passed. What the task would see must
// then never be mounted: the start is refused by the check of the created
// task's mounts, while the legitimate bind still runs.
func TestBindSourceSwappedAfterTheStartCheckIsNeverRun(t *testing.T) {
	vols := t.TempDir()
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "secret"), []byte("host secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := rtpolicy.Policy{VolumesDir: vols}
	var race, restore atomic.Bool
	rt := ctrd.StartRuntime(t, func(c *ctrd.RuntimeConfig) {
		c.StartCheck = func(module, image string, spec *specs.Spec) error {
			err := p.CheckStart(module, image, spec)
			if err == nil && race.Load() {
				// The other writer wins: the checked directory becomes a
				// link to the host's.
				data := filepath.Join(vols, module, "data")
				if err := os.Rename(data, data+".old"); err != nil {
					t.Errorf("swap: %v", err)
				}
				if err := os.Symlink(host, data); err != nil {
					t.Errorf("swap: %v", err)
				}
			}
			return err
		}
		c.MountCheck = func(module, image string, spec *specs.Spec, pid uint32) error {
			if restore.Load() {
				// ...and puts the directory back once runc has mounted.
				data := filepath.Join(vols, module, "data")
				if err := os.Remove(data); err != nil {
					t.Errorf("swap back: %v", err)
				}
				if err := os.Rename(data+".old", data); err != nil {
					t.Errorf("swap back: %v", err)
				}
			}
			return p.CheckMounted(module, image, spec, pid)
		}
	})
	create := func(name string) {
		t.Helper()
		data := filepath.Join(vols, name, "data")
		if err := os.MkdirAll(data, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(data, "secret"), []byte("own data\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		req := ctrd.CreateRequest{Name: name, Image: ctrd.TestImage, Restart: modspec.RestartNever, Opts: []oci.SpecOpts{
			oci.WithProcessArgs("sh", "-c", "cat /data/secret; sleep 600"),
			oci.WithMounts([]specs.Mount{{Destination: "/data", Type: "bind", Source: data, Options: []string{"rbind", "rw"}}}),
		}}
		if err := rt.Create(t.Context(), req); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
	}
	status := func(name string) ctrd.Status {
		t.Helper()
		st, err := rt.Status(t.Context(), name)
		if err != nil {
			t.Fatalf("status %s: %v", name, err)
		}
		return st
	}
	output := func(name string) string {
		stdout, _, _ := ctrd.LogText(t, rt, name, logstore.Options{Tail: -1})
		return stdout
	}

	// Legitimate: the bind as checked is what the module sees.
	create("keeper")
	if err := rt.Start(t.Context(), "keeper"); err != nil {
		t.Fatalf("start keeper: %v", err)
	}
	if !testenv.WaitFor(20*time.Second, func() bool { return strings.Contains(output("keeper"), "own data") }) {
		t.Fatalf("keeper never read its own data: %q, status %+v", output("keeper"), status("keeper"))
	}

	// Attack: the source is swapped after the check; the attacker leaves
	// the link, or puts the directory back right after the mount.
	for _, tc := range []struct {
		name    string
		restore bool
	}{{"victim", false}, {"restorer", true}} {
		create(tc.name)
		race.Store(true)
		restore.Store(tc.restore)
		err := rt.Start(t.Context(), tc.name)
		race.Store(false)
		restore.Store(false)
		// The refused start left no task that could still print: what the
		// log holds now is all the module will ever have written.
		if pids, err := rt.Pids(t.Context(), tc.name); err != nil || len(pids) != 0 {
			t.Fatalf("%s: the refused start left a task: pids %v, %v", tc.name, pids, err)
		}
		if out := output(tc.name); strings.Contains(out, "host secret") {
			t.Fatalf("%s read the host's file through the swapped bind: %q", tc.name, out)
		}
		if !errors.Is(err, rtpolicy.ErrPolicy) {
			t.Fatalf("%s: start after the swap: %v; want a refusal by the module policy", tc.name, err)
		}
		if tc.restore && !strings.Contains(err.Error(), "changed while the module started") {
			t.Fatalf("%s: %v; want the refusal to say the source changed", tc.name, err)
		}
		if st := status(tc.name); st.State != ctrd.StateFailed || st.Reason == "" {
			t.Fatalf("%s: status after the refused start: %+v", tc.name, st)
		}
	}
}
