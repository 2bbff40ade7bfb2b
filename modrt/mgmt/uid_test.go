package mgmt

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/modrt/ctrd"
)

// A real second uid (nobody), in no module, may read but not manage.
func TestAnotherUIDMayReadButNotManage(t *testing.T) {
	testenv.RequireRoot(t) // to run a client as another uid
	curl, err := exec.LookPath("curl")
	if err != nil {
		testenv.Missing(t, "curl", "it speaks HTTP over a Unix socket as another uid")
	}
	e := newEnv(t, asAgent, true)
	e.mods.add(ctrd.Status{Name: "m", State: ctrd.StateRunning}, nil)
	for d := filepath.Dir(e.sock); d != filepath.Clean(os.TempDir()) && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	os.Chmod(e.sock, 0o666)
	as := func(method, path string) string {
		cmd := exec.Command(curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", method,
			"--unix-socket", e.sock, "http://mgmt"+v(path))
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("curl as nobody: %v", err)
		}
		return strings.TrimSpace(string(out))
	}
	if code := as("GET", "/modules"); code != "200" {
		t.Errorf("GET /modules as nobody: %s", code)
	}
	for _, rq := range [][2]string{{"POST", "/modules/m/restart"}, {"DELETE", "/modules/m"}, {"POST", "/device/reprovision"}} {
		if code := as(rq[0], rq[1]); code != "403" {
			t.Errorf("%s %s as nobody: %s, want 403", rq[0], rq[1], code)
		}
	}
	if c := e.mods.Calls(); strings.Join(c, ",") != "list,get m" {
		t.Errorf("calls %v", c)
	}
}
