package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/edgev2/edgev2/internal/testenv"
)

const superConfig = `hostname = "edge-gw-2"

[provisioning]
source = "manual"
connection_string = "HostName=myhub.azure-devices.net;DeviceId=edge-gw-2;SharedAccessKey=c2VjcmV0LWRldmljZS1rZXktYnl0ZXMtMDEyMzQ1Njc="
`

const principal = `
[[principal]]
user = "edgev2-tester"
keys = ["module-*"]
`

func applyCLI(t *testing.T, bin, cfg, root string, extra ...string) (applyReport, string, int) {
	t.Helper()
	args := append([]string{"config", "apply", "-c", cfg, "--root", root, "--json"}, extra...)
	out, errOut, code := testenv.RunAs(t, "root", nil, bin, args...)
	var rep applyReport
	if code == 0 {
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("config apply printed no valid JSON (%v):\n%s", err, out)
		}
	}
	return rep, errOut, code
}

func changedNames(rep applyReport) []string {
	var names []string
	for _, f := range rep.Files {
		if f.Changed {
			names = append(names, filepath.Base(f.Path))
		}
	}
	sort.Strings(names)
	return names
}

func TestConfigApplyWritesServiceConfigsWithOwnersAndThenOnlyWhatChanged(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.EnsureAllUsers(t)
	bin := testenv.BuildBinary(t, "./cmd/edgectl")
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	cfg := filepath.Join(dir, "config.toml")
	os.WriteFile(cfg, []byte(superConfig), 0o600)

	rep, errOut, code := applyCLI(t, bin, cfg, root, "--dry-run")
	if code != 0 || len(changedNames(rep)) < 4 {
		t.Fatalf("dry run: exit %d %s; %+v", code, errOut, rep)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/edgev2")); !os.IsNotExist(err) {
		t.Fatalf("--dry-run wrote files (stat: %v)", err)
	}

	rep, errOut, code = applyCLI(t, bin, cfg, root)
	if code != 0 {
		t.Fatalf("config apply: exit %d: %s", code, errOut)
	}
	owners := map[string]string{"keyd.toml": testenv.ServiceUser, "certd.toml": testenv.CertsUser, "identityd.toml": testenv.IdentityUser, "modrtd.toml": "root"}
	for name, user := range owners {
		path := filepath.Join(root, "etc/edgev2", name)
		st, err := os.Stat(path)
		if err != nil {
			t.Fatalf("%s was not written: %v (report %+v)", name, err, rep)
		}
		uid, _ := testenv.EnsureUser(t, user)
		if st.Mode().Perm() != 0o600 || int(st.Sys().(*syscall.Stat_t).Uid) != uid {
			t.Errorf("%s: mode %v uid %d; want 0600 owned by %s", name, st.Mode().Perm(), st.Sys().(*syscall.Stat_t).Uid, user)
		}
	}
	id, _ := os.ReadFile(filepath.Join(root, "etc/edgev2/identityd.toml"))
	if !strings.Contains(string(id), "edge-gw-2") {
		t.Fatalf("identityd.toml does not carry the provisioning:\n%s", id)
	}
	if len(rep.NeedRestart) == 0 || len(rep.Restarted) != 0 {
		t.Fatalf("under --root nothing restarts but the changed services are named: %+v", rep)
	}

	rep, errOut, code = applyCLI(t, bin, cfg, root)
	if code != 0 || len(changedNames(rep)) != 0 || len(rep.NeedRestart) != 0 {
		t.Fatalf("second apply: exit %d %s; changed %v, restarts %v", code, errOut, changedNames(rep), rep.NeedRestart)
	}
	out, _, _ := testenv.RunAs(t, "root", nil, bin, "config", "apply", "-c", cfg, "--root", root)
	if !strings.Contains(out, "nothing changed") {
		t.Fatalf("human output of an unchanged apply: %q", out)
	}

	os.WriteFile(cfg, []byte(superConfig+principal), 0o600)
	rep, errOut, code = applyCLI(t, bin, cfg, root)
	if code != 0 {
		t.Fatalf("apply with a principal: exit %d: %s", code, errOut)
	}
	changed := changedNames(rep)
	if len(changed) == 0 || len(changed) == len(rep.Files) {
		t.Fatalf("adding a principal changed %v of %d files; want some, not all", changed, len(rep.Files))
	}
	for _, f := range rep.Files {
		if f.Changed && strings.HasSuffix(f.Path, "keyd.toml") {
			t.Fatalf("a principal changed keyd.toml: %+v", rep.Files)
		}
	}
}

func TestConfigApplyRefusesABadConfigNamingLineKeyAndFix(t *testing.T) {
	testenv.RequireRoot(t)
	bin := testenv.BuildBinary(t, "./cmd/edgectl")
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	cfg := filepath.Join(dir, "config.toml")
	os.WriteFile(cfg, []byte("hostname = \"gw\"\n\n[provisioning]\nsource = \"carrier-pigeon\"\n"), 0o600)
	_, errOut, code := applyCLI(t, bin, cfg, root)
	if code != exitConfig {
		t.Fatalf("bad config: exit %d, want %d: %s", code, exitConfig, errOut)
	}
	for _, want := range []string{cfg, "4", "source", "fix"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("the error %q does not name %q", errOut, want)
		}
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Fatalf("a bad config still wrote files (stat %v)", err)
	}
}
