package modrt

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/edgev2/edgev2/modrt/mgmt"
	rtpolicy "github.com/edgev2/edgev2/modrt/policy"
	"github.com/edgev2/edgev2/modrt/workload"
)

// TestWhatModulesSeeKeepsItsModeUnderTheUnitsUMask proves that what modrtd
// makes for modules to use has the mode the code asks for whatever the
// umask: edgev2-modrtd.service runs modrtd with UMask=0077. A workload or
// management socket directory made 0700 (root's) lets no module process
// that is not root reach its socket (edgeAgent's and edgeHub's images run
// as non-root users); a hosts file made 0600, bound at /etc/hosts, leaves
// such a process no name resolution; a volume directory made 0700 is
// closed to it.
func TestWhatModulesSeeKeepsItsModeUnderTheUnitsUMask(t *testing.T) {
	old := syscall.Umask(0o077)
	t.Cleanup(func() { syscall.Umask(old) })
	home := t.TempDir()
	mode := func(p string) os.FileMode {
		t.Helper()
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return st.Mode().Perm()
	}

	wl := workload.NewManager(filepath.Join(home, "workload"), bundlesOnly{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := wl.Listen("sensor"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(wl.CloseAll)
	if got := mode(wl.Dir("sensor")); got != 0o755 {
		t.Errorf("workload socket directory (bound at /var/run/iotedge) is %v, want 0755", got)
	}

	l, err := mgmt.ListenUnix(filepath.Join(home, "mgmt", "mgmt.sock"), 0o660)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if got := mode(filepath.Join(home, "mgmt")); got != 0o755 {
		t.Errorf("management socket directory (bound into edgeAgent) is %v, want 0755", got)
	}

	os.MkdirAll(filepath.Join(home, "hosts"), 0o755)
	hosts := filepath.Join(home, "hosts", networkHostsName)
	if err := rewriteInPlace(hosts, []byte("127.0.0.1 localhost\n")); err != nil {
		t.Fatal(err)
	}
	if got := mode(hosts); got != 0o644 {
		t.Errorf("modules' hosts file (bound at /etc/hosts) is %v, want 0644", got)
	}
	// One an older modrtd left 0600 is mended even when its text is current.
	os.Chmod(hosts, 0o600)
	if err := rewriteInPlace(hosts, []byte("127.0.0.1 localhost\n")); err != nil {
		t.Fatal(err)
	}
	if got := mode(hosts); got != 0o644 {
		t.Errorf("a 0600 hosts file with current text stays %v, want 0644", got)
	}

	vols := filepath.Join(home, "volumes")
	p := rtpolicy.Policy{VolumesDir: vols}
	spec := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}}},
		Mounts: []specs.Mount{{Destination: "/data", Type: "bind", Source: filepath.Join(vols, "sensor", "data"), Options: []string{"rbind", "rw"}}}}
	if err := p.CheckStart("sensor", "img", spec); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Join(vols, "sensor"), filepath.Join(vols, "sensor", "data")} {
		if got := mode(d); got != 0o755 {
			t.Errorf("volume directory %s is %v, want 0755", d, got)
		}
	}
}

// bundlesOnly is a workload backend for a socket no request reaches.
type bundlesOnly struct{ workload.Backend }

func (bundlesOnly) TrustBundle(context.Context) (string, error)         { return "", nil }
func (bundlesOnly) ManifestTrustBundle(context.Context) (string, error) { return "", nil }
