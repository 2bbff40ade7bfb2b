package e2e_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/internal/testenv"
	rtapi "github.com/edgev2/edgev2/modrt/api"
	"github.com/edgev2/edgev2/modrt/logstore"
)

// TestWorkloadSocketDirectoryCannotBeTurnedAgainstTheHost: a module tries
// to replace its workload socket with a link to a host file (its socket
// directory is read-only), and a link left there anyway (as a container
// from before the mount was read-only could) is never followed when modrtd
// listens again: the host file keeps its mode and content, and the module
// still reaches its workload API.
func TestWorkloadSocketDirectoryCannotBeTurnedAgainstTheHost(t *testing.T) {
	w := newWorld(t)
	importKey(t, w, "dps-key", "sign", dpsKey)
	w.startIdentityd(t, "workload", fmt.Sprintf("[provisioning]\nsource = \"dps\"\nglobal_endpoint = \"https://%s\"\nid_scope = \"0ne00000042\"\n[provisioning.attestation]\nmethod = \"symmetric_key\"\nregistration_id = \"reg-sym\"\nsymmetric_key = \"dps-key\"\n", w.hubHost))
	w.waitState(t, "provisioned", 30*time.Second)

	ctr := testenv.StartContainerd(t)
	bin := filepath.Join(t.TempDir(), "workloadclient")
	build := exec.Command("go", "build", "-o", bin, "./internal/testenv/workloadclient")
	build.Dir = testenv.RepoRoot()
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build workloadclient: %v\n%s", err, out)
	}
	archive := testenv.BuildImage(t, "edgev2.test/workloadclient:1", testenv.ImageConfig{
		Entrypoint: []string{"/bin/workloadclient"}, Files: map[string]string{"/bin/workloadclient": bin}})
	dir := testenv.SharedTempDir(t, "modrtd")
	cfg := filepath.Join(dir, "modrtd.toml")
	ns := fmt.Sprintf("edgev2-wls-%d", time.Now().UnixNano())
	os.WriteFile(cfg, []byte(fmt.Sprintf("homedir = %q\ncontainerd_address = %q\nnamespace = %q\ntrust_bundle = \"labcloud-ca\"\n", filepath.Join(dir, "home"), ctr.Address, ns)), 0o600)
	svc := testenv.StartService(t, w.bus, testenv.ServiceOptions{
		Binary: testenv.BuildBinary(t, "./cmd/edgev2-modrtd"), Args: []string{"--config", cfg, "--log-level", "debug"},
		User: "root", BusName: rtapi.BusName,
	})
	root := w.conn.Object(rtapi.BusName, rtapi.ObjectPath)
	f, _ := os.Open(archive)
	var names []string
	if err := root.Call(rtapi.Interface+".ImportImage", 0, godbus.UnixFD(f.Fd())).Store(&names); err != nil {
		t.Fatalf("ImportImage: %v", err)
	}
	f.Close()

	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("host secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	const sock = "/var/run/iotedge/workload.sock"
	script := "if ln -sf /etc/shadow " + sock + " 2>/dev/null || rm " + sock + " 2>/dev/null; then echo ATTACK-REPLACED; else echo ATTACK-REFUSED; fi; /bin/workloadclient; trap 'exit 0' TERM; sleep 600 & wait"
	spec := fmt.Sprintf(`{"name":"prober","type":"docker","restartPolicy":"never","config":{"settings":{"image":"edgev2.test/workloadclient:1","createOptions":{"Entrypoint":["/bin/sh","-c"],"Cmd":[%q]}},"env":{"OTHER_MODULE":{"value":"nobody"}}}}`, script)
	var p godbus.ObjectPath
	if err := root.Call(rtapi.Interface+".CreateModule", 0, "prober", spec, map[string]godbus.Variant{}).Store(&p); err != nil {
		t.Fatalf("CreateModule: %v", err)
	}
	obj := w.conn.Object(rtapi.BusName, bus.ChildPath(rtapi.ObjectPath, "modules", "prober"))
	// results returns the module's logs once it has printed n results.
	results := func(n int) (string, []map[string]any) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			var fd godbus.UnixFD
			if err := obj.Call(rtapi.ModuleInterface+".GetLogs", 0, map[string]godbus.Variant{}).Store(&fd); err != nil {
				t.Fatal(err)
			}
			lf := os.NewFile(uintptr(fd), "logs")
			text, _ := logstore.FramedText(lf)
			lf.Close()
			var res []map[string]any
			sc := bufio.NewScanner(strings.NewReader(text))
			for sc.Scan() {
				if j, ok := strings.CutPrefix(sc.Text(), "WORKLOAD-RESULT "); ok {
					var r map[string]any
					if err := json.Unmarshal([]byte(j), &r); err != nil {
						t.Fatalf("result line %q: %v", j, err)
					}
					res = append(res, r)
				}
			}
			if len(res) >= n {
				return text, res
			}
		}
		t.Fatalf("module prober printed fewer than %d results", n)
		return "", nil
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
	hostSock := filepath.Join(dir, "home", "workload", "prober", "workload.sock")
	svc.Kill9(t)
	os.Remove(hostSock)
	if err := os.Symlink(victim, hostSock); err != nil {
		t.Fatal(err)
	}
	svc.Restart(t)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if fi, err := os.Lstat(hostSock); err == nil && fi.Mode().Type() == os.ModeSocket {
			if fi.Mode().Perm() != 0o666 {
				t.Fatalf("the new socket is %v, want 0666", fi.Mode())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("modrtd did not listen again on the module's socket")
		}
	}
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
