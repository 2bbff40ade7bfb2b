package e2e_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgev2/edgev2/internal/testenv"
	rtapi "github.com/edgev2/edgev2/modrt/api"
)

// TestNewDeviceIdentityRemovesModulesAndRestartsTheAgent: as aziot-edged
// does on reprovisioning, a device identity with another device id makes
// modrtd remove every module and start the agent afresh; the same identity
// announced again changes nothing.
func TestNewDeviceIdentityRemovesModulesAndRestartsTheAgent(t *testing.T) {
	w := newWorld(t)
	manual := func(device string) string {
		return fmt.Sprintf("[provisioning]\nsource = \"manual\"\nconnection_string = \"HostName=%s;DeviceId=%s;SharedAccessKey=%s\"\n", w.hubHost, device, sasKey1)
	}
	w.startIdentityd(t, "reprov", manual("manual-sas"))
	w.waitState(t, "provisioned", 30*time.Second)

	ctr := w.dev.Containerd()
	archive := testenv.BuildImage(t, "edgev2.test/sleeper:1", testenv.ImageConfig{Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"sleep 600"}})
	agent := `{"name":"edgeAgent","type":"docker","restartPolicy":"always","config":{"settings":{"image":"edgev2.test/sleeper:1","createOptions":{}}}}`
	// The image is there before modrtd starts, so the agent starts at once.
	testenv.ImportImage(t, ctr, "edgev2-reprov", archive)
	modrtd := w.dev.StartDaemon(t, testenv.Modrtd, testenv.Daemon{Namespace: "edgev2-reprov", Config: fmt.Sprintf("[agent]\nspec = '%s'\n", agent)})
	root := w.dev.Runtime()
	list := func() []string {
		var names []string
		root.Call(rtapi.Interface+".ListModules", 0).Store(&names)
		return names
	}
	task := func(name string) string {
		for _, line := range strings.Split(ctr.Ctr(t, "-n", "edgev2-reprov", "tasks", "ls"), "\n") {
			if f := strings.Fields(line); len(f) >= 3 && f[0] == name && f[2] == "RUNNING" {
				return f[1]
			}
		}
		return ""
	}
	waitTask := func(name, not string) string {
		t.Helper()
		var p string
		if !testenv.WaitFor(60*time.Second, func() bool { p = task(name); return p != "" && p != not }) {
			t.Fatalf("%s has no new running task (old %s); modrtd output:\n%s", name, not, modrtd.Output())
		}
		return p
	}
	agentPid := waitTask("edgeAgent", "")
	extra := `{"name":"extra","type":"docker","restartPolicy":"never","config":{"settings":{"image":"edgev2.test/sleeper:1","createOptions":{}}}}`
	if err := w.dev.CreateModule("extra", extra); err != nil {
		t.Fatalf("CreateModule extra: %v", err)
	}
	waitTask("extra", "")

	// The same identity again (identityd restarted): nothing changes. modrtd
	// handles IdentityChanged in the background and says when it compared
	// the identity and kept the modules.
	kept := func() int { return strings.Count(modrtd.Output(), "device identity unchanged; modules kept") }
	keptBefore := kept()
	w.startIdentityd(t, "reprov", manual("manual-sas"))
	w.waitState(t, "provisioned", 30*time.Second)
	testenv.Eventually(t, 30*time.Second, func() bool { return kept() > keptBefore },
		"modrtd did not compare the identity announced again; its output:\n%s", modrtd.Output())
	if got := strings.Join(list(), ","); got != "edgeAgent,extra" || task("edgeAgent") != agentPid {
		t.Fatalf("after the same identity: modules %s, agent task %s (was %s); want both kept as they were", got, task("edgeAgent"), agentPid)
	}

	// Another device id: modules removed, the agent created afresh.
	w.startIdentityd(t, "reprov2", manual("other-device"))
	w.waitState(t, "provisioned", 30*time.Second)
	newPid := waitTask("edgeAgent", agentPid)
	if !testenv.WaitFor(30*time.Second, func() bool { return strings.Join(list(), ",") == "edgeAgent" }) {
		t.Fatalf("after a new device id the modules are %v; want only a new edgeAgent", list())
	}
	if newPid == agentPid {
		t.Fatal("the agent kept its task across the new identity")
	}
	st, _ := w.dev.Module("edgeAgent").GetProperty(rtapi.ModuleInterface + ".Status")
	if st.Value() != "running" {
		t.Fatalf("the new agent is %v, want running", st.Value())
	}
}
