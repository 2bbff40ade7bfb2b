package main

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/edgev2/edgev2/internal/credential"
	"github.com/edgev2/edgev2/internal/testenv"
)

// The secrets of sealedConfig, as an attacker imaging the disk would grep
// for them.
var sealedSecrets = []string{"4711-pin-of-the-token", "est-basic-password-xyz", "c2VhbGVkLWRwcy1lbnJvbGxtZW50LWtleQ==", "sealed-dps-enrollment-key"}

func sealedConfig(estPassword string) string {
	s := `hostname = "edge-gw-9"

[keys]
pkcs11_lib_path = "/usr/lib/softhsm/libsofthsm2.so"
pkcs11_base_slot = "pkcs11:token=edgev2?pin-value=4711-pin-of-the-token"

[provisioning]
source = "dps"
id_scope = "0ne00000A0B"

[provisioning.attestation]
method = "symmetric_key"
registration_id = "edge-gw-9"
symmetric_key = { value = "c2VhbGVkLWRwcy1lbnJvbGxtZW50LWtleQ==" }
`
	if estPassword != "" {
		s += `
[cert_issuance.est]
url = "https://est.example.net/.well-known/est"
username = "edge-gw-9"
password = "` + estPassword + `"
`
	}
	return s
}

func requireSystemdCreds(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.EnsureAllUsers(t)
	if _, err := exec.LookPath("systemd-creds"); err != nil {
		testenv.Missing(t, "systemd-creds", "sealing credentials needs it (package systemd >= 250)")
	}
}

// decrypt runs systemd-creds decrypt against root's host key, or fails.
func decrypt(root, name, path string) ([]byte, error) {
	return systemdCreds(context.Background(), root, nil, "decrypt", "--name="+name, path, "-")
}

// grepTree reports every file under dir holding one of secrets.
func grepTree(t *testing.T, dir string, secrets []string) []string {
	t.Helper()
	var hits []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		b, _ := os.ReadFile(p)
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				hits = append(hits, p+" holds "+s)
			}
		}
		return nil
	})
	return hits
}

func TestApplySealsEverySecretAndLeavesNoneInClear(t *testing.T) {
	requireSystemdCreds(t)
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	cfg := filepath.Join(dir, "config.toml")
	os.WriteFile(cfg, []byte(sealedConfig("est-basic-password-xyz")), 0o600)
	o := applyOptions{config: cfg, root: root}
	// Old clear inline key from before credentials: removed.
	os.MkdirAll(filepath.Join(root, "etc/edgev2"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/edgev2/keyd.device-id.key"), []byte("sealed-dps-enrollment-key"), 0o600)

	rep, err := apply(context.Background(), compileSuperConfig, o)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if hits := grepTree(t, root, sealedSecrets); len(hits) > 0 {
		t.Fatalf("secrets in clear under the root after apply:\n%s", strings.Join(hits, "\n"))
	}
	want := map[string]string{
		"edgev2.keyd.pin":           "4711-pin-of-the-token",
		"edgev2.keyd.device-id":     "sealed-dps-enrollment-key",
		"edgev2.certd.est-password": "est-basic-password-xyz",
	}
	found, _ := filepath.Glob(filepath.Join(root, credential.StoreDir, "*"))
	if len(found) != len(want) {
		t.Fatalf("credentials written: %v, want %d", found, len(want))
	}
	for name, secret := range want {
		path := filepath.Join(root, credential.StoreDir, name)
		st, err := os.Stat(path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if sys := st.Sys().(*syscall.Stat_t); st.Mode().Perm() != 0o600 || sys.Uid != 0 {
			t.Errorf("%s: mode %v uid %d, want 0600 root", name, st.Mode(), sys.Uid)
		}
		data, _ := os.ReadFile(path)
		if s := credential.Sealing(data); s != credential.SealHost {
			t.Errorf("%s: sealed to %q, want host (under --root: the target's host key)", name, s)
		}
		plain, err := decrypt(root, name, path)
		if err != nil || string(plain) != secret {
			t.Errorf("%s: decrypt: %v (right value: %v)", name, err, string(plain) == secret)
		}
		// The name is sealed in: loaded under another name, it is refused.
		if _, err := decrypt(root, "edgev2.keyd.other", path); err == nil {
			t.Errorf("%s decrypts under another name", name)
		}
	}
	// Another machine (another host key) cannot open them.
	other := filepath.Join(dir, "other")
	for name := range want {
		if _, err := decrypt(other, name, filepath.Join(root, credential.StoreDir, name)); err == nil {
			t.Errorf("%s decrypts with another machine's host key", name)
		}
	}
	for unit, lines := range map[string][]string{
		"edgev2-keyd.service":  {credential.UnitLine("edgev2.keyd.device-id"), credential.UnitLine("edgev2.keyd.pin")},
		"edgev2-certd.service": {credential.UnitLine("edgev2.certd.est-password")},
	} {
		d, err := os.ReadFile(filepath.Join(root, "etc/systemd/system", unit+".d", "50-credentials.conf"))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lines {
			if !strings.Contains(string(d), l+"\n") {
				t.Errorf("%s drop-in lacks %s:\n%s", unit, l, d)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(root, "etc/edgev2/keyd.device-id.key")); !os.IsNotExist(err) {
		t.Errorf("the old clear key file is still there: %v", err)
	}
	if rep.Reloaded {
		t.Errorf("daemon-reload under --root")
	}

	// Again, unchanged: nothing is re-sealed or rewritten.
	before := map[string][]byte{}
	for name := range want {
		before[name], _ = os.ReadFile(filepath.Join(root, credential.StoreDir, name))
	}
	rep, err = apply(context.Background(), compileSuperConfig, o)
	if err != nil || len(changedPaths(rep)) != 0 {
		t.Fatalf("second apply: %v, changed %v; want nothing", err, changedPaths(rep))
	}
	for name := range want {
		if after, _ := os.ReadFile(filepath.Join(root, credential.StoreDir, name)); !bytes.Equal(after, before[name]) {
			t.Errorf("%s was re-sealed by an apply that changed nothing", name)
		}
	}

	// A new EST password: only its credential changes, certd restarts.
	os.WriteFile(cfg, []byte(sealedConfig("est-basic-password-new")), 0o600)
	rep, err = apply(context.Background(), compileSuperConfig, o)
	if err != nil {
		t.Fatal(err)
	}
	if got := changedPaths(rep); len(got) != 1 || filepath.Base(got[0]) != "edgev2.certd.est-password" || strings.Join(rep.NeedRestart, ",") != "edgev2-certd.service" {
		t.Fatalf("new password: changed %v, restart %v; want the one credential and certd", got, rep.NeedRestart)
	}

	// EST gone: its credential and certd's drop-in go too.
	os.WriteFile(cfg, []byte(sealedConfig("")), 0o600)
	rep, err = apply(context.Background(), compileSuperConfig, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(credential.StoreDir, "edgev2.certd.est-password"), "/etc/systemd/system/edgev2-certd.service.d/50-credentials.conf"} {
		if _, err := os.Stat(filepath.Join(root, p)); !os.IsNotExist(err) {
			t.Errorf("%s outlived its setting: %v", p, err)
		}
	}
}

func TestApplyThatFailsSealingLeavesTheInstalledStateAsItWas(t *testing.T) {
	root, cfg, o := appliedSealed(t, "")
	snapshot := func() map[string]string {
		m := map[string]string{}
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				b, _ := os.ReadFile(p)
				m[p] = string(b)
			}
			return nil
		})
		return m
	}
	before := snapshot()

	// New password and new key; the second sealing fails (a TPM error, a
	// full disk): nothing may be written.
	real := systemdCreds
	t.Cleanup(func() { systemdCreds = real })
	seals := 0
	systemdCreds = func(ctx context.Context, r string, stdin []byte, args ...string) ([]byte, error) {
		if args[0] == "encrypt" {
			if seals++; seals == 2 {
				return nil, errors.New("TPM2 error")
			}
		}
		return real(ctx, r, stdin, args...)
	}
	cfgText := strings.ReplaceAll(sealedConfig("est-basic-password-new"), "4711-pin-of-the-token", "4712-new-pin")
	os.WriteFile(cfg, []byte(cfgText), 0o600)
	if _, err := apply(context.Background(), compileSuperConfig, o); err == nil || !strings.Contains(err.Error(), "TPM2 error") {
		t.Fatalf("apply with a failing seal: %v", err)
	}
	after := snapshot()
	var diff []string
	for p, b := range after {
		if before[p] != b {
			diff = append(diff, p)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			diff = append(diff, p+" (removed)")
		}
	}
	sort.Strings(diff)
	if len(diff) > 0 {
		t.Fatalf("a failed apply changed the installed files:\n%s", strings.Join(diff, "\n"))
	}
}

func TestApplySealNoneWritesClearCredentialsForLoadCredential(t *testing.T) {
	root, cfg, o := appliedSealed(t, sealNoneConfig)
	b, err := os.ReadFile(filepath.Join(root, credential.ClearStoreDir, "edgev2.certd.est-password"))
	if err != nil || string(b) != "est-basic-password-xyz" {
		t.Fatalf("clear credential: %q %v", b, err)
	}
	// Back to sealing: the clear copies are removed.
	os.WriteFile(cfg, []byte(sealedConfig("est-basic-password-xyz")), 0o600)
	if _, err := apply(context.Background(), compileSuperConfig, o); err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(root, credential.ClearStoreDir, "*")); len(left) > 0 {
		t.Fatalf("clear credentials left after sealing: %v", left)
	}
	if hits := grepTree(t, root, sealedSecrets); len(hits) > 0 {
		t.Fatalf("secrets in clear:\n%s", strings.Join(hits, "\n"))
	}
}

// sealNoneConfig keeps the credentials in the clear store.
const sealNoneConfig = "\n[secrets]\nseal = \"none\"\n"

// appliedSealed writes sealedConfig (and extra) to a temporary
// config.toml and applies it once under a temporary root.
func appliedSealed(t *testing.T, extra string) (root, cfg string, o applyOptions) {
	t.Helper()
	requireSystemdCreds(t)
	dir := t.TempDir()
	root, cfg = filepath.Join(dir, "root"), filepath.Join(dir, "config.toml")
	os.WriteFile(cfg, []byte(sealedConfig("est-basic-password-xyz")+extra), 0o600)
	o = applyOptions{config: cfg, root: root}
	if _, err := apply(context.Background(), compileSuperConfig, o); err != nil {
		t.Fatal(err)
	}
	return root, cfg, o
}
