package e2e_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgev2/edgev2/internal/testenv"
	rtapi "github.com/edgev2/edgev2/modrt/api"
)

// TestWorkloadSocketDirectoryCannotBeTurnedAgainstTheHost: a module tries
// to replace its workload socket with a link to a host file (its socket
// directory is read-only), and a link left there anyway (as a container
// from before the mount was read-only could) is never followed when modrtd
// listens again: the host file keeps its mode and content, and the module
// still reaches its workload API.
func TestWorkloadSocketDirectoryCannotBeTurnedAgainstTheHost(t *testing.T) {
	w := newWorld(t)
	w.provisionDPS(t, "workload")
	svc := w.startRuntime(t, fmt.Sprintf("edgev2-wls-%d", time.Now().UnixNano()), "trust_bundle = \"labcloud-ca\"\n")

	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("host secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	const sock = "/var/run/iotedge/workload.sock"
	script := "if ln -sf /etc/shadow " + sock + " 2>/dev/null || rm " + sock + " 2>/dev/null; then echo ATTACK-REPLACED; else echo ATTACK-REFUSED; fi; /bin/workloadclient; trap 'exit 0' TERM; sleep 600 & wait"
	spec := fmt.Sprintf(`{"name":"prober","type":"docker","restartPolicy":"never","config":{"settings":{"image":"edgev2.test/workloadclient:1","createOptions":{"Entrypoint":["/bin/sh","-c"],"Cmd":[%q]}},"env":{"OTHER_MODULE":{"value":"nobody"}}}}`, script)
	if err := w.dev.CreateModule("prober", spec); err != nil {
		t.Fatalf("CreateModule: %v", err)
	}
	obj := w.dev.Module("prober")
	// results returns the module's logs once it has printed n results.
	results := func(n int) (string, []map[string]any) {
		t.Helper()
		var text string
		var res []map[string]any
		testenv.Eventually(t, 60*time.Second, func() bool {
			text = w.dev.ModuleLogs(t, "prober")
			res = testenv.JSONLines(t, text, "WORKLOAD-RESULT")
			return len(res) >= n
		}, "module prober printed fewer than %d results", n)
		return text, res
	}
	logs, res := results(1)
	if strings.Contains(logs, "ATTACK-REPLACED") || !strings.Contains(logs, "ATTACK-REFUSED") {
		t.Fatalf("the module could change its socket directory: %q", logs)
	}
	if res[0]["sign_status"] != float64(200) {
		t.Fatalf("the module's own workload API: %v", res[0])
	}

	// What a module with a writable directory would have left: a link
	// where the socket goes. modrtd restarts and listens again.
	hostSock := filepath.Join(w.dev.Home(testenv.Modrtd), "workload", "prober", "workload.sock")
	svc.Kill9(t)
	os.Remove(hostSock)
	if err := os.Symlink(victim, hostSock); err != nil {
		t.Fatal(err)
	}
	svc.Restart(t)
	testenv.Eventually(t, 30*time.Second, func() bool {
		fi, err := os.Lstat(hostSock)
		if err != nil || fi.Mode().Type() != os.ModeSocket {
			return false
		}
		if fi.Mode().Perm() != 0o666 {
			t.Fatalf("the new socket is %v, want 0666", fi.Mode())
		}
		return true
	}, "modrtd did not listen again on the module's socket")
	if fi, err := os.Stat(victim); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the host file is %v (%v); want 0600", fi.Mode(), err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "host secret" {
		t.Fatalf("the host file changed: %q", b)
	}
	// The module, started again, reaches the new socket.
	if err := obj.Call(rtapi.ModuleInterface+".Restart", 0).Err; err != nil {
		t.Fatalf("Restart: %v", err)
	}
	_, res = results(2)
	if res[1]["sign_status"] != float64(200) {
		t.Fatalf("after modrtd listened again: %v", res[1])
	}
}
