package modrt_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgev2/edgev2/internal/testenv"
)

// TestModrtdAgentIsRecognisedOnTheManagementSocket: edgeAgent, from inside
// its real container, passes the agent-only check of mgmt.sock both as its
// task's first process and as a child process (the same pid-ownership rule
// the workload sockets use, modrt.PidOwners).
func TestModrtdAgentIsRecognisedOnTheManagementSocket(t *testing.T) {
	m := startModrtd(t)
	bin := filepath.Join(t.TempDir(), "workloadclient")
	build := exec.Command("go", "build", "-o", bin, "./internal/testenv/workloadclient")
	build.Dir = testenv.RepoRoot()
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build workloadclient: %v\n%s", err, out)
	}
	m.importImage(t, testenv.BuildImage(t, "edgev2.test/workloadclient:1", testenv.ImageConfig{
		Entrypoint: []string{"/bin/workloadclient"}, Files: map[string]string{"/bin/workloadclient": bin}}))
	if err := m.create("edgeAgent", `{"name":"edgeAgent","type":"docker","restartPolicy":"never","config":{"settings":{"image":"edgev2.test/workloadclient:1","createOptions":{}},"env":{"MGMT_PROBE":{"value":"1"}}}}`); err != nil {
		t.Fatalf("CreateModule edgeAgent: %v", err)
	}
	var res map[string]any
	for deadline := time.Now().Add(60 * time.Second); res == nil && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		for _, line := range strings.Split(m.logs(t, "edgeAgent"), "\n") {
			if j, ok := strings.CutPrefix(line, "WORKLOAD-RESULT "); ok {
				if err := json.Unmarshal([]byte(j), &res); err != nil {
					t.Fatalf("result %q: %v", j, err)
				}
			}
		}
	}
	if res == nil {
		t.Fatalf("edgeAgent printed no result; logs:\n%s", m.logs(t, "edgeAgent"))
	}
	t.Logf("edgeAgent: %v", res)
	if res["error"] != nil {
		t.Fatal(res["error"])
	}
	// 404: past the agent-only check, the module does not exist.
	if res["init_status"] != float64(404) || res["child_status"] != float64(404) {
		t.Fatalf("edgeAgent's DELETE of an unknown module: as the task %v, as a child process %v; want 404 (recognised as the agent) for both", res["init_status"], res["child_status"])
	}
}
