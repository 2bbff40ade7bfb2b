package main

import (
	"archive/zip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/edgev2/edgev2/internal/testenv"
)

func testSupportBundle(t *testing.T, w *world) {
	out := filepath.Join(t.TempDir(), "bundle.zip")
	args := []string{"support-bundle", "-o", out, "-c", filepath.Join(w.etc, "config.toml"), "--config-dir", w.etc,
		"--polkit-actions-dir", w.actionsDir, "--timeout", "3s"}
	if _, errOut, code := w.run(t, "root", args...); code != 0 {
		t.Fatalf("support-bundle: exit %d: %s", code, errOut)
	}
	files := readZip(t, out)
	for name, b := range files {
		for _, secret := range []string{hubDeviceKey, estPassword} {
			if strings.Contains(b, secret) {
				t.Errorf("%s in the bundle holds a secret", name)
			}
		}
	}
	var rep checkReport
	if err := json.Unmarshal([]byte(files["check.json"]), &rep); err != nil || rep.Errors != 0 {
		t.Fatalf("check.json: %v, %+v", err, rep)
	}
	id := files["configs/identityd.toml"]
	if !strings.Contains(id, "SharedAccessKey=REDACTED") || !strings.Contains(id, "DeviceId=edge-gw-1") {
		t.Fatalf("identityd.toml in the bundle:\n%s", id)
	}
	if c := files["configs/certd.toml"]; !strings.Contains(c, `password = 'REDACTED'`) || !strings.Contains(c, `key_id = 'device-id'`) {
		t.Fatalf("certd.toml in the bundle:\n%s", c)
	}
	_, journal := files["logs/edgev2-keyd.log"]
	_, noJournal := files["logs/README.txt"]
	if !journal && !noJournal {
		t.Fatalf("the bundle has neither journal logs nor a note why: %v", keysOf(files))
	}
	if _, ok := files["modules/list.json"]; !ok {
		t.Fatalf("no module list in the bundle: %v", keysOf(files))
	}
}

func keysOf(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// TestSupportBundleOfEverySecretShapeHoldsNoSecret writes a super-config
// and per-service configs that hold secrets in every shape config apply
// accepts (inline tables, quoted, escaped and dotted keys, multi-line
// strings, arrays of tables, PKCS#11 pin-values, connection strings, URL
// passwords, module spec JSON), runs `edgectl support-bundle`, and finds
// none of the secrets in any file of the zip, while the settings that help
// diagnosis are still there.
func TestSupportBundleOfEverySecretShapeHoldsNoSecret(t *testing.T) {
	testenv.RequireRoot(t)
	bin := testenv.BuildBinary(t, "./cmd/edgectl")
	dir := t.TempDir()
	secrets := map[string]string{}
	secret := func(name string) string {
		s := "SeCrEt" + strings.ToUpper(strings.ReplaceAll(name, "-", "")) + "x9Q"
		secrets[name] = s
		return s
	}
	files := map[string]string{
		"config.toml": `hostname = "edge-gw-9"

[provisioning]
source = "dps"
id_scope = "0ne00000A0A"
"connection_string" = "HostName=hub.example.net;DeviceId=edge-gw-9;SharedAccessKey=` + secret("connstr") + `"
attestation = { method = "symmetric_key", registration_id = "reg-9", symmetric_key = { value = "` + secret("inline-attest") + `" } }

[provisioning.authentication]
method = "sas"
device_id_pk."v\u0061lue" = "` + secret("escaped-value") + `"

[keys]
pkcs11_lib_path = "/usr/lib/softhsm/libsofthsm2.so"
pkcs11_base_slot = "pkcs11:token=edgev2?pin-value=` + secret("base-pin") + `"

[preloaded_keys]
device-key = "pkcs11:token=edgev2;object=dev?pin-value=` + secret("preloaded-pin") + `"

[cert_issuance.est]
url = "https://factory:` + secret("url-password") + `@est.example.net/.well-known/est"
username = "factory"
password = """
` + secret("multiline-password") + `"""

[cert_issuance.certs.device-id]
method = "est"
common_name = "edge-gw-9"

[tpm]
hierarchy_authorization.endorsement = "` + secret("dotted-endorsement") + `"
hierarchy_authorization.owner = '''` + secret("literal-owner") + `'''

[[modules]]
name = "telemetry"
spec = '{"name":"telemetry","config":{"settings":{"image":"reg.example/t:1"},"auth":{"username":"pull","password":"` + secret("spec-password") + `"},"env":{"API_TOKEN":{"value":"` + secret("spec-env") + `"}}}}'

[[registry]]
address = "reg.example"
'password' = "` + secret("array-table-password") + `"
`,
		"keyd.toml": "homedir = \"/var/lib/edgev2/keyd\"\npkcs11_base_slot = \"pkcs11:token=edgev2?pin-value=" + secret("keyd-pin") + "\"\n",
		"certd.toml": "homedir = \"/var/lib/edgev2/certd\"\n[est]\nurl = \"https://est.example.net/.well-known/est\"\nusername = \"factory\"\n\"password\" = '" + secret("certd-password") + "'\n" +
			"[cert_issuance.device-id]\nmethod = \"est\"\nkey_id = \"device-id\"\n",
		"identityd.toml": "homedir = \"/var/lib/edgev2/identityd\"\n[provisioning]\nsource = \"manual\"\nconnection_string = \"HostName=hub.example.net;DeviceId=edge-gw-9;SharedAccessKey=" + secret("identityd-connstr") + "\"\n" +
			"[tpm]\nhierarchy_authorization = { owner = \"" + secret("identityd-owner") + "\" }\n",
		// Not TOML: only where it fails may be shown.
		"modrtd.toml": "homedir = \"/var/lib/edgev2/modrtd\"\n[agent]\nspec = '{\"env\":{\"K\":{\"value\":\"" + secret("unparsable") + "\"}}}\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "bundle.zip")
	env := []string{"DBUS_SYSTEM_BUS_ADDRESS=unix:path=" + filepath.Join(dir, "no-bus")}
	if _, errOut, code := testenv.RunAs(t, "root", env, bin, "support-bundle", "-o", out, "-c", filepath.Join(dir, "config.toml"),
		"--config-dir", dir, "--timeout", "1s"); code != 0 {
		t.Fatalf("support-bundle: exit %d: %s", code, errOut)
	}

	got := readZip(t, out)
	for file, b := range got {
		for name, s := range secrets {
			if strings.Contains(b, s) {
				t.Errorf("%s in the bundle holds the %s secret", file, name)
			}
		}
	}
	for _, name := range []string{"config.toml", "keyd.toml", "certd.toml", "identityd.toml"} {
		var tree map[string]any
		if err := toml.Unmarshal([]byte(got["configs/"+name]), &tree); err != nil {
			t.Errorf("configs/%s in the bundle is not valid TOML: %v", name, err)
		}
	}
	kept := map[string][]string{
		"configs/config.toml": {"hostname = 'edge-gw-9'", "registration_id = 'reg-9'", "username = 'factory'",
			"pkcs11_lib_path = '/usr/lib/softhsm/libsofthsm2.so'", "HostName=hub.example.net;DeviceId=edge-gw-9;SharedAccessKey=REDACTED",
			"pkcs11:token=edgev2?pin-value=REDACTED", "https://factory:REDACTED@est.example.net", `"image":"reg.example/t:1"`, "address = 'reg.example'"},
		"configs/certd.toml":     {"username = 'factory'", "key_id = 'device-id'", "password = 'REDACTED'"},
		"configs/identityd.toml": {"DeviceId=edge-gw-9", "[tpm.hierarchy_authorization]"},
		"configs/modrtd.toml":    {"not valid TOML (line 3, column"},
	}
	for file, want := range kept {
		for _, s := range want {
			if !strings.Contains(got[file], s) {
				t.Errorf("%s lost %q:\n%s", file, s, got[file])
			}
		}
	}
}

// readZip is the text of every file in the zip archive at path, by name.
func readZip(t *testing.T, path string) map[string]string {
	t.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	files := map[string]string{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		files[f.Name] = string(b)
	}
	return files
}
