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

// TestModuleGetsItsTokenThroughTheWorkloadSocket is the seeds' last step: a
// module container asks its workload socket to sign a SAS token, which the
// hub accepts, and cannot sign as another module.
func TestModuleGetsItsTokenThroughTheWorkloadSocket(t *testing.T) {
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
	ns := fmt.Sprintf("edgev2-wl-%d", time.Now().UnixNano())
	os.WriteFile(cfg, []byte(fmt.Sprintf("homedir = %q\ncontainerd_address = %q\nnamespace = %q\ntrust_bundle = \"labcloud-ca\"\nmanifest_trust_bundle = \"no-such-bundle\"\n"+
		// The modules post to the hub (labcloud) on the host's 127.0.0.1.
		"[policy]\nallow_host_network = [\"sensor-a\", \"sensor-b\"]\n", filepath.Join(dir, "home"), ctr.Address, ns)), 0o600)
	w.grant(t, w.certdCfg, "", cfg)
	testenv.StartService(t, w.bus, testenv.ServiceOptions{
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
	create := func(name, other string) {
		t.Helper()
		spec := fmt.Sprintf(`{"name":%q,"type":"docker","restartPolicy":"never","config":{"settings":{"image":"edgev2.test/workloadclient:1","createOptions":{"HostConfig":{"NetworkMode":"host"}}},"env":{"OTHER_MODULE":{"value":%q},"WANT_SERVER_CERT":{"value":"1"}}}}`, name, other)
		var p godbus.ObjectPath
		if err := root.Call(rtapi.Interface+".CreateModule", 0, name, spec, map[string]godbus.Variant{}).Store(&p); err != nil {
			t.Fatalf("CreateModule %s: %v", name, err)
		}
	}
	create("sensor-b", "sensor-a")
	create("sensor-a", "sensor-b")
	result := func(name string) map[string]any {
		t.Helper()
		obj := w.conn.Object(rtapi.BusName, bus.ChildPath(rtapi.ObjectPath, "modules", name))
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			var fd godbus.UnixFD
			if err := obj.Call(rtapi.ModuleInterface+".GetLogs", 0, map[string]godbus.Variant{}).Store(&fd); err != nil {
				t.Fatal(err)
			}
			lf := os.NewFile(uintptr(fd), "logs")
			text, _ := logstore.FramedText(lf)
			lf.Close()
			sc := bufio.NewScanner(strings.NewReader(text))
			for sc.Scan() {
				if j, ok := strings.CutPrefix(sc.Text(), "WORKLOAD-RESULT "); ok {
					var res map[string]any
					if err := json.Unmarshal([]byte(j), &res); err != nil {
						t.Fatalf("result line %q: %v", j, err)
					}
					return res
				}
			}
		}
		t.Fatalf("module %s printed no result", name)
		return nil
	}
	for _, name := range []string{"sensor-a", "sensor-b"} {
		res := result(name)
		t.Logf("%s: %v", name, res)
		if res["error"] != nil {
			t.Fatalf("%s: %v", name, res["error"])
		}
		if res["sign_status"] != float64(200) || res["trust_bundle_status"] != float64(200) {
			t.Fatalf("%s: workload API answered sign %v, trust-bundle %v; want 200", name, res["sign_status"], res["trust_bundle_status"])
		}
		if res["sign_as_other_status"] != float64(403) {
			t.Fatalf("%s signing as the other module got %v; want 403", name, res["sign_as_other_status"])
		}
		if res["hub_status"] != float64(204) {
			t.Fatalf("the hub answered %v to %s's token from its workload socket; want 204", res["hub_status"], name)
		}
		if res["server_cert_status"] != float64(201) || res["server_cert_ok"] != true {
			t.Fatalf("%s: server certificate %v ok=%v (%v); want 201 and a chain that verifies against the trust bundle", name, res["server_cert_status"], res["server_cert_ok"], res["server_cert_error"])
		}
		if res["server_cert_foreign_status"] != float64(403) || !strings.Contains(fmt.Sprint(res["server_cert_foreign_message"]), "edgeHub") {
			t.Fatalf("%s: a server certificate for edgeHub answered %v (%v); want 403 naming the name", name, res["server_cert_foreign_status"], res["server_cert_foreign_message"])
		}
		if res["identity_cert_status"] != float64(201) || res["identity_cert_ok"] != true {
			t.Fatalf("%s: identity certificate %v ok=%v (%v); want 201 and a client certificate for the module's hub identity under the trust bundle", name, res["identity_cert_status"], res["identity_cert_ok"], res["identity_cert_error"])
		}
		if res["encrypt_status"] != float64(200) || res["decrypt_status"] != float64(200) || res["decrypt_roundtrip"] != true {
			t.Fatalf("%s: encrypt %v, decrypt %v, round trip %v; want 200, 200, true", name, res["encrypt_status"], res["decrypt_status"], res["decrypt_roundtrip"])
		}
		if s := res["decrypt_other_generation_status"]; s == float64(200) || s == float64(0) {
			t.Fatalf("%s: decrypting under another generation id answered %v; want a refusal", name, s)
		}
		if res["decrypt_as_other_status"] != float64(403) || res["encrypt_bad_body_status"] != float64(400) {
			t.Fatalf("%s: decrypt as the other module %v (want 403), encrypt of non-base64 %v (want 400)", name, res["decrypt_as_other_status"], res["encrypt_bad_body_status"])
		}
		if res["manifest_trust_bundle_status"] != float64(200) || res["manifest_trust_bundle_present"] != true {
			t.Fatalf("%s: manifest-trust-bundle %v (certificate present %v); want 200 with a certificate field", name, res["manifest_trust_bundle_status"], res["manifest_trust_bundle_present"])
		}
		if n := w.cloud.Hub.AcceptedMessages("reg-sym", name); n != 1 {
			t.Fatalf("hub accepted %d messages from %s, want 1", n, name)
		}
	}
	// A process that is not the module's (this test, as root) is refused.
	sock := filepath.Join(dir, "home", "workload", "sensor-a", "workload.sock")
	out, err := exec.Command("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", sock,
		"http://workload/trust-bundle?api-version=2019-01-30").Output()
	if err != nil || string(out) != "403" {
		t.Fatalf("a host process on sensor-a's socket got %q (%v); want 403", out, err)
	}
}
