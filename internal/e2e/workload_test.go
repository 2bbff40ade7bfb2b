package e2e_test

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgev2/edgev2/internal/testenv"
)

// TestModuleGetsItsTokenThroughTheWorkloadSocket is the seeds' last step: a
// module container asks its workload socket to sign a SAS token, which the
// hub accepts, and cannot sign as another module.
func TestModuleGetsItsTokenThroughTheWorkloadSocket(t *testing.T) {
	w := newWorld(t)
	w.provisionDPS(t, "workload")
	w.startRuntime(t, fmt.Sprintf("edgev2-wl-%d", time.Now().UnixNano()), "trust_bundle = \"labcloud-ca\"\nmanifest_trust_bundle = \"no-such-bundle\"\n"+
		// The modules post to the hub (labcloud) on the host's 127.0.0.1.
		"[policy]\nallow_host_network = [\"sensor-a\", \"sensor-b\"]\n")
	create := func(name, other string) {
		t.Helper()
		spec := fmt.Sprintf(`{"name":%q,"type":"docker","restartPolicy":"never","config":{"settings":{"image":"edgev2.test/workloadclient:1","createOptions":{"HostConfig":{"NetworkMode":"host"}}},"env":{"OTHER_MODULE":{"value":%q},"WANT_SERVER_CERT":{"value":"1"}}}}`, name, other)
		if err := w.dev.CreateModule(name, spec); err != nil {
			t.Fatalf("CreateModule %s: %v", name, err)
		}
	}
	create("sensor-b", "sensor-a")
	create("sensor-a", "sensor-b")
	for _, name := range []string{"sensor-a", "sensor-b"} {
		res := w.dev.WaitModuleLine(t, name, "WORKLOAD-RESULT", nil)
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
	sock := filepath.Join(w.dev.Home(testenv.Modrtd), "workload", "sensor-a", "workload.sock")
	out, err := exec.Command("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", sock,
		"http://workload/trust-bundle?api-version=2019-01-30").Output()
	if err != nil || string(out) != "403" {
		t.Fatalf("a host process on sensor-a's socket got %q (%v); want 403", out, err)
	}
}

// provisionDPS provisions identityd (in a home named name) with DPS by
// symmetric key, as registration reg-sym.
func (w *world) provisionDPS(t *testing.T, name string) {
	t.Helper()
	importKey(t, w, "dps-key", "sign", dpsKey)
	w.startIdentityd(t, name, fmt.Sprintf("[provisioning]\nsource = \"dps\"\nglobal_endpoint = \"https://%s\"\nid_scope = \"0ne00000042\"\n[provisioning.attestation]\nmethod = \"symmetric_key\"\nregistration_id = \"reg-sym\"\nsymmetric_key = \"dps-key\"\n", w.hubHost))
	w.waitState(t, "provisioned", 30*time.Second)
}

// createClient creates and starts module name from the workloadclient
// image (restartPolicy never) with env as its environment.
func (w *world) createClient(t *testing.T, name string, env map[string]string) {
	t.Helper()
	envJSON := map[string]map[string]string{}
	for k, v := range env {
		envJSON[k] = map[string]string{"value": v}
	}
	e, _ := json.Marshal(envJSON)
	spec := fmt.Sprintf(`{"name":%q,"type":"docker","restartPolicy":"never","config":{"settings":{"image":"edgev2.test/workloadclient:1","createOptions":{}},"env":%s}}`, name, e)
	if err := w.dev.CreateModule(name, spec); err != nil {
		t.Fatalf("CreateModule %s: %v", name, err)
	}
}

// startRuntime starts modrtd on the world's device (containerd namespace
// ns, config after the lines the device writes) with the workloadclient
// image imported.
func (w *world) startRuntime(t *testing.T, ns, config string) *testenv.Service {
	t.Helper()
	svc := w.dev.StartDaemon(t, testenv.Modrtd, testenv.Daemon{Namespace: ns, Config: config})
	w.dev.ImportImage(t, testenv.WorkloadClientImage(t))
	return svc
}
