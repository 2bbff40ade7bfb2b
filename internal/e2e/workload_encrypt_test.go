package e2e_test

import (
	"encoding/base64"
	"fmt"
	"testing"
	"time"
)

// ownerSecret is what workloadclient's "owner" role encrypts.
const ownerSecret = "the owner's secret reading: 42.17 degrees"

// TestWorkloadEncryptionIsPerModule: module sensor-2 encrypts a secret over
// its workload socket and still decrypts it after modrtd and keyd restart;
// module sensor, from inside its own container and with sensor-2's
// ciphertext, IV and generation id in hand, cannot read it: naming
// sensor-2 in the path is 403, its own path does not authenticate (400), a
// generation id spliced to complete sensor-2's name is 403, a generation
// id not its own is 403, and zeros encrypted under sensor-2's IV XORed
// with the ciphertext are not the secret. sensor's own encrypt/decrypt works.
func TestWorkloadEncryptionIsPerModule(t *testing.T) {
	w := newWorld(t)
	w.provisionDPS(t, "workload-encrypt")
	modrtd := w.startRuntime(t, fmt.Sprintf("edgev2-enc-%d", time.Now().UnixNano()), "")
	waitLine := func(name, prefix string, match func(map[string]any) bool) map[string]any {
		t.Helper()
		return w.dev.WaitModuleLine(t, name, prefix, match)
	}
	w.createClient(t, "sensor-2", map[string]string{"ENCRYPT_ROLE": "owner"})
	owner := waitLine("sensor-2", "ENCRYPT-OWNER", nil)
	if owner["status"] != float64(200) {
		t.Fatalf("sensor-2 encrypting its secret got %v; want 200", owner["status"])
	}
	waitLine("sensor-2", "ENCRYPT-DECRYPT", func(l map[string]any) bool { return l["status"] == float64(200) && l["ok"] == true })

	// Across restarts of modrtd and keyd (keys reloaded from the store),
	// the module's ciphertext still decrypts for it.
	w.keyd.Restart(t)
	modrtd.Restart(t)
	last := 0.0
	for _, l := range w.dev.ModuleLines(t, "sensor-2", "ENCRYPT-DECRYPT") {
		last = max(last, l["n"].(float64))
	}
	// Line last+2 was requested after line last+1 was printed, which was
	// after this point: it reached the restarted services.
	after := waitLine("sensor-2", "ENCRYPT-DECRYPT", func(l map[string]any) bool { return l["n"].(float64) >= last+2 && l["status"] == float64(200) })
	if after["ok"] != true {
		t.Fatalf("sensor-2 decrypting its ciphertext after restarts: %v; want its secret back", after)
	}

	w.createClient(t, "sensor", map[string]string{"ENCRYPT_ROLE": "attacker", "VICTIM": "sensor-2", "VICTIM_GENID": owner["genid"].(string),
		"VICTIM_CIPHERTEXT": owner["ciphertext"].(string), "VICTIM_IV": owner["iv"].(string)})
	res := waitLine("sensor", "WORKLOAD-RESULT", nil)
	t.Logf("sensor: %v", res)
	if res["error"] != nil {
		t.Fatalf("sensor: %v", res["error"])
	}
	if res["own_encrypt_status"] != float64(200) || res["own_decrypt_status"] != float64(200) || res["own_roundtrip"] != true {
		t.Fatalf("sensor's own encrypt %v, decrypt %v, round trip %v; want 200, 200, true", res["own_encrypt_status"], res["own_decrypt_status"], res["own_roundtrip"])
	}
	for _, c := range []struct{ key, what string }{
		{"as_victim_status", "decrypting sensor-2's ciphertext naming sensor-2 in the path"},
		{"spliced_genid_status", "decrypting under generation id \"-2<sensor-2's generation>\""},
		{"wrong_genid_status", "encrypting under a generation id not its own"},
	} {
		if res[c.key] != float64(403) {
			t.Errorf("sensor %s got %v; want 403", c.what, res[c.key])
		}
	}
	if res["own_path_status"] != float64(400) {
		t.Errorf("sensor decrypting sensor-2's ciphertext under its own name got %v; want 400 (does not authenticate)", res["own_path_status"])
	}
	xor, _ := base64.StdEncoding.DecodeString(fmt.Sprint(res["xor_plaintext"]))
	if res["zeros_status"] != float64(200) || len(xor) != len(ownerSecret) {
		t.Fatalf("sensor encrypting zeros under sensor-2's IV: %v, %d bytes; want 200 and %d bytes", res["zeros_status"], len(xor), len(ownerSecret))
	}
	if string(xor) == ownerSecret {
		t.Fatal("sensor recovered sensor-2's secret by encrypting zeros under its IV and XORing")
	}
}
