package main

import (
	"archive/zip"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"testing"
)

func testSupportBundle(t *testing.T, w *world) {
	out := filepath.Join(t.TempDir(), "bundle.zip")
	args := []string{"support-bundle", "-o", out, "-c", filepath.Join(w.etc, "config.toml"), "--config-dir", w.etc,
		"--polkit-actions-dir", w.actionsDir, "--timeout", "3s"}
	if _, errOut, code := w.run(t, "root", args...); code != 0 {
		t.Fatalf("support-bundle: exit %d: %s", code, errOut)
	}
	zr, err := zip.OpenReader(out)
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
		for _, secret := range []string{hubDeviceKey, estPassword} {
			if strings.Contains(string(b), secret) {
				t.Errorf("%s in the bundle holds a secret", f.Name)
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
	if c := files["configs/certd.toml"]; !strings.Contains(c, `password = "REDACTED"`) || !strings.Contains(c, `key_id = "device-id"`) {
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
