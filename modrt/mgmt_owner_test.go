package modrt_test

import (
	"testing"

	"github.com/edgev2/edgev2/internal/testenv"
	rtapi "github.com/edgev2/edgev2/modrt/api"
)

// TestModrtdAgentIsRecognisedOnTheManagementSocket: edgeAgent, from inside
// its real container, passes the agent-only check of mgmt.sock both as its
// task's first process and as a child process (the same pid-ownership rule
// the workload sockets use, modrt.PidOwners).
func TestModrtdAgentIsRecognisedOnTheManagementSocket(t *testing.T) {
	m := startModrtd(t)
	m.ImportImage(t, testenv.WorkloadClientImage(t))
	if err := m.CreateModule("edgeAgent", `{"name":"edgeAgent","type":"docker","restartPolicy":"never","config":{"settings":{"image":"edgev2.test/workloadclient:1","createOptions":{}},"env":{"MGMT_PROBE":{"value":"1"}}}}`); err != nil {
		t.Fatalf("CreateModule edgeAgent: %v", err)
	}
	res := m.WaitModuleLine(t, "edgeAgent", "WORKLOAD-RESULT", nil)
	t.Logf("edgeAgent: %v", res)
	if res["error"] != nil {
		t.Fatal(res["error"])
	}
	// 404: past the agent-only check, the module does not exist.
	if res["init_status"] != float64(404) || res["child_status"] != float64(404) {
		t.Fatalf("edgeAgent's DELETE of an unknown module: as the task %v, as a child process %v; want 404 (recognised as the agent) for both", res["init_status"], res["child_status"])
	}
}

// TestModrtdManagementSocketRefusesAnotherModuleRunningAsRoot: modules run
// as uid 0, so "root may call" must mean root on the host, not a module's
// root. A module the policy lets share the host's pid namespace reaches
// edgeAgent's socket through /proc/<agent pid>/root; its calls are refused
// (403), while edgeAgent itself still passes (404 for an unknown module).
func TestModrtdManagementSocketRefusesAnotherModuleRunningAsRoot(t *testing.T) {
	m := startModrtdIn(t, "edgev2-mgmtroot", `[[policy.allow]]`, `modules = ["snoop"]`, `host_pid = true`)
	m.ImportImage(t, testenv.WorkloadClientImage(t))
	m.ImportImage(t, testenv.BuildImage(t, "edgev2.test/busybox:1", testenv.ImageConfig{Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"echo default"}}))
	result := func(name string) map[string]any {
		t.Helper()
		return m.WaitModuleLine(t, name, "WORKLOAD-RESULT", nil)
	}
	// edgeAgent probes once; then an edgeAgent that stays up holds its
	// socket for the other module.
	if err := m.CreateModule("edgeAgent", `{"name":"edgeAgent","type":"docker","restartPolicy":"never","config":{"settings":{"image":"edgev2.test/workloadclient:1","createOptions":{}},"env":{"MGMT_PROBE":{"value":"1"}}}}`); err != nil {
		t.Fatalf("CreateModule edgeAgent: %v", err)
	}
	if res := result("edgeAgent"); res["init_status"] != float64(404) {
		t.Fatalf("edgeAgent's own call: %v; want 404 (recognised as the agent)", res)
	}
	m.Module("edgeAgent").Call(rtapi.ModuleInterface+".Remove", 0)
	if err := m.CreateModule("edgeAgent", specCO("edgeAgent", "edgev2.test/busybox:1", "never", `{}`, "sleep 600")); err != nil {
		t.Fatalf("CreateModule edgeAgent (sleeping): %v", err)
	}
	m.waitStatus(t, "edgeAgent", "running")

	spec := `{"name":"snoop","type":"docker","restartPolicy":"never","config":{"settings":{"image":"edgev2.test/workloadclient:1","createOptions":{"HostConfig":{"PidMode":"host"}}},` +
		`"env":{"MGMT_PROBE":{"value":"1"},"MGMT_SOCK_GLOB":{"value":"/proc/[0-9]*/root/var/run/iotedge-mgmt/mgmt.sock"}}}}`
	if err := m.CreateModule("snoop", spec); err != nil {
		t.Fatalf("CreateModule snoop: %v", err)
	}
	res := result("snoop")
	t.Logf("snoop: %v", res)
	if res["init_status"] == float64(-1) {
		t.Fatalf("snoop did not reach the agent's socket (the attack needs it): %v", res)
	}
	if res["init_status"] != float64(403) || res["child_status"] != float64(403) {
		t.Fatalf("a module running as root, through the agent's socket: as its task %v, as a child %v; want 403 for both", res["init_status"], res["child_status"])
	}
}
