package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/edgev2/edgev2/internal/labcloud/labhost"
)

// Labcloud is a running edgev2-labcloud binary (the cloud stand-in).
type Labcloud struct {
	URL      string // https://HOSTNAME, port 443 as in Azure
	Hostname string // bare name (the hub's, DPS's and EST's), in /etc/hosts
	Addr     string // its own loopback address, 127.77.x.y:443
	CAFile   string // the trust anchor it wrote (readable by every uid)
	State    string
	proc     *process
}

// StartLabcloud builds and runs edgev2-labcloud with the given TOML config
// text ("$STATE" is replaced by its state directory), and waits for it to
// print its URL. Like a real hub it is reached at a host name without a
// port, on 443: its own 127.77.x.y and an /etc/hosts line (labhost), so
// tests in parallel each have theirs. It is stopped, and the line removed,
// on cleanup.
func StartLabcloud(t TB, configText string) *Labcloud {
	t.Helper()
	RequireRoot(t) // port 443 and /etc/hosts
	host := labhost.Reserve(t)
	bin := BuildBinary(t, "./cmd/edgev2-labcloud")
	dir := SharedTempDir(t, "labcloud")
	state := filepath.Join(dir, "state")
	cfg := filepath.Join(dir, "labcloud.toml")
	// "$STATE" in the config names the state directory (e.g. the EST CA's
	// certificate, which a DPS X.509 group enrollment may trust).
	configText = strings.ReplaceAll(configText, "$STATE", state)
	if err := os.WriteFile(cfg, []byte(configText), 0o600); err != nil {
		t.Fatalf("write labcloud config: %v", err)
	}
	cmd := exec.Command(bin, "--state", state, "--config", cfg, "--listen", host.Addr(), "--hub-hostname", host.Name)
	cmd.Env = []string{basePath}
	out := &capBuffer{}
	proc, err := startProcess(cmd, out)
	if err != nil {
		t.Fatalf("start edgev2-labcloud: %v", err)
	}
	l := &Labcloud{Hostname: host.Name, Addr: host.Addr(), State: state, CAFile: filepath.Join(state, "ca.pem"), proc: proc}
	t.Cleanup(func() {
		proc.stop(syscall.SIGTERM, 5*time.Second)
		logIfFailed(t, "edgev2-labcloud", out)
	})
	const ready = "edgev2-labcloud listening on "
	Eventually(t, 20*time.Second, func() bool {
		for _, line := range strings.Split(out.String(), "\n") {
			if u, ok := strings.CutPrefix(line, ready); ok {
				l.URL = strings.TrimSpace(u)
			}
		}
		select {
		case <-proc.done:
			t.Fatalf("edgev2-labcloud exited (code %d): %s", proc.exitCode(), out)
		default:
		}
		return l.URL != ""
	}, "edgev2-labcloud printed no URL: %s", out)
	return l
}
