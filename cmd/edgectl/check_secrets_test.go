package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgev2/edgev2/internal/credential"
)

func secretResults(t *testing.T, o checkOptions) map[string]checkResult {
	t.Helper()
	k := &checker{o: o}
	k.checkConfigs()
	k.checkSecrets()
	got := map[string]checkResult{}
	for _, r := range k.results {
		if strings.HasPrefix(r.Name, "secrets") {
			got[r.Name] = r
		}
	}
	return got
}

func TestCheckReportsWhereEachSecretLives(t *testing.T) {
	root, cfg, _ := appliedSealed(t, "")
	credentialRoot = root
	t.Cleanup(func() { credentialRoot = "" })
	o := checkOptions{superConfig: cfg, configDir: filepath.Join(root, "etc/edgev2")}

	got := secretResults(t, o)
	for name, want := range map[string]string{
		"secrets.keyd.pin":                    "sealed to host",
		"secrets.keyd.key.device-id":          "sealed to host",
		"secrets.certd.est-password":          "sealed to host",
		"secrets.super-config":                "holds 3 secrets in clear",
		"secrets.identityd.connection-string": "",
	} {
		r, ok := got[name]
		if want == "" {
			if ok {
				t.Errorf("%s reported for a config without it: %+v", name, r)
			}
			continue
		}
		wantStatus := statusOK
		if name == "secrets.super-config" {
			wantStatus = statusWarning
		}
		if !ok || r.Status != wantStatus || !strings.Contains(r.Message, want) {
			t.Errorf("%s = %+v, want %s containing %q", name, r, wantStatus, want)
		}
	}

	// A credential replaced by a clear file, another one gone.
	os.WriteFile(filepath.Join(root, credential.StoreDir, "edgev2.keyd.pin"), []byte("4711-pin-of-the-token"), 0o600)
	os.Remove(filepath.Join(root, credential.StoreDir, "edgev2.certd.est-password"))
	got = secretResults(t, o)
	if r := got["secrets.keyd.pin"]; r.Status != statusWarning || !strings.Contains(r.Message, "not sealed") {
		t.Errorf("a clear file where the sealed PIN was: %+v", r)
	}
	if r := got["secrets.certd.est-password"]; r.Status != statusError || !strings.Contains(r.Fix, "edgectl config apply") {
		t.Errorf("a missing credential: %+v", r)
	}
	for _, r := range got {
		if strings.Contains(r.Message+r.Fix, "4711-pin-of-the-token") || strings.Contains(r.Message+r.Fix, "est-basic-password-xyz") {
			t.Fatalf("check printed a secret: %+v", r)
		}
	}
}

func TestCheckWarnsAboutSecretsInClearServiceConfigs(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "keyd.toml"), []byte(`homedir = "/var/lib/edgev2/keyd"
pkcs11_lib_path = "/usr/lib/softhsm/libsofthsm2.so"
pkcs11_base_slot = "pkcs11:token=edgev2?pin-value=1234"
[preloaded_keys]
hsm = "pkcs11:token=other;object=x?pin-source=file:///etc/edgev2/other.pin"
`), 0o600)
	os.WriteFile(filepath.Join(dir, "certd.toml"), []byte(`homedir = "/var/lib/edgev2/certd"
[est]
url = "https://est.example.net/.well-known/est"
username = "u"
password = "clear-est-password"
challenge_password_file = "/etc/edgev2/challenge"
`), 0o600)
	got := secretResults(t, checkOptions{superConfig: filepath.Join(dir, "absent.toml"), configDir: dir})
	for name, want := range map[string]string{
		"secrets.keyd.pin":                     "in clear in the file (pin-value)",
		"secrets.keyd.pin.hsm":                 "clear file (pin-source file:///etc/edgev2/other.pin)",
		"secrets.certd.est-password":           "in clear in the file",
		"secrets.certd.est-challenge-password": "clear file (/etc/edgev2/challenge)",
	} {
		if r, ok := got[name]; !ok || r.Status != statusWarning || !strings.Contains(r.Message, want) || strings.Contains(r.Message, "1234") || strings.Contains(r.Message, "clear-est-password") {
			t.Errorf("%s = %+v, want a warning containing %q (and no secret)", name, r, want)
		}
	}
}
