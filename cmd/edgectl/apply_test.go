package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/edgev2/edgev2/internal/testenv"
)

func compiled(files ...installFile) compileFunc {
	return func(string) ([]installFile, error) { return files, nil }
}

func changedPaths(rep *applyReport) []string {
	var out []string
	for _, f := range rep.Files {
		if f.Changed {
			out = append(out, f.Path)
		}
	}
	return out
}

func TestApplyInstallsWithOwnerAndModeAndReportsOnlyChangedFiles(t *testing.T) {
	testenv.RequireRoot(t)
	kuid, kgid := testenv.EnsureUser(t, testenv.ServiceUser)
	cuid, _ := testenv.EnsureUser(t, testenv.CertsUser)
	root := t.TempDir()
	keyd := installFile{Path: "/etc/edgev2/keyd.toml", Owner: testenv.ServiceUser, Mode: 0o600, Data: []byte("homedir = \"/var/lib/edgev2/keyd\"\n"), Service: "edgev2-keyd.service"}
	certd := installFile{Path: "/etc/edgev2/certd.toml", Owner: testenv.CertsUser, Mode: 0o600, Data: []byte("homedir = \"/var/lib/edgev2/certd\"\n"), Service: "edgev2-certd.service"}
	rules := installFile{Path: "/etc/polkit-1/rules.d/60-edgev2-principals.rules", Mode: 0o644, Data: []byte("// none\n")}
	ctx := context.Background()
	o := applyOptions{config: "test.toml", root: root}

	rep, err := apply(ctx, compiled(keyd, certd, rules), o)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(root, keyd.Path), filepath.Join(root, certd.Path), filepath.Join(root, rules.Path)}
	if got := changedPaths(rep); !reflect.DeepEqual(got, want) {
		t.Fatalf("first apply changed %v, want %v", got, want)
	}
	if !reflect.DeepEqual(rep.NeedRestart, []string{"edgev2-certd.service", "edgev2-keyd.service"}) || len(rep.Restarted) != 0 {
		t.Fatalf("under --root: restarted %v, need restart %v", rep.Restarted, rep.NeedRestart)
	}
	for _, c := range []struct {
		f        installFile
		uid, gid int
	}{{keyd, kuid, kgid}, {certd, cuid, -1}, {rules, 0, 0}} {
		st, err := os.Stat(filepath.Join(root, c.f.Path))
		if err != nil {
			t.Fatal(err)
		}
		sys := st.Sys().(*syscall.Stat_t)
		if st.Mode().Perm() != c.f.Mode || int(sys.Uid) != c.uid || (c.gid >= 0 && int(sys.Gid) != c.gid) {
			t.Errorf("%s: mode %v uid %d gid %d; want %v uid %d", c.f.Path, st.Mode().Perm(), sys.Uid, sys.Gid, c.f.Mode, c.uid)
		}
	}

	rep, err = apply(ctx, compiled(keyd, certd, rules), o)
	if err != nil {
		t.Fatal(err)
	}
	if got := changedPaths(rep); len(got) != 0 || len(rep.NeedRestart) != 0 {
		t.Fatalf("second apply of the same config changed %v, restarts %v", got, rep.NeedRestart)
	}

	certd.Data = []byte("homedir = \"/var/lib/edgev2/certd2\"\n")
	os.Chmod(filepath.Join(root, rules.Path), 0o666)
	rep, err = apply(ctx, compiled(keyd, certd, rules), o)
	if err != nil {
		t.Fatal(err)
	}
	if got := changedPaths(rep); !reflect.DeepEqual(got, want[1:]) {
		t.Fatalf("after one content and one mode change, changed %v, want %v", got, want[1:])
	}
	if rep.Files[1].Reason != "content" || rep.Files[2].Reason != "mode" {
		t.Fatalf("reasons %q, %q; want content, mode", rep.Files[1].Reason, rep.Files[2].Reason)
	}
	if !reflect.DeepEqual(rep.NeedRestart, []string{"edgev2-certd.service"}) {
		t.Fatalf("need restart %v, want only certd", rep.NeedRestart)
	}
	os.Chown(filepath.Join(root, keyd.Path), 0, 0)
	if rep, _ = apply(ctx, compiled(keyd, certd, rules), o); rep.Files[0].Reason != "owner" {
		t.Fatalf("a wrong owner was not noticed: %+v", rep.Files[0])
	}
}

func TestApplyDryRunWritesNothing(t *testing.T) {
	root := t.TempDir()
	f := installFile{Path: "/etc/edgev2/modrtd.toml", Mode: 0o600, Data: []byte("x = 1\n"), Service: "edgev2-modrtd.service"}
	rep, err := apply(context.Background(), compiled(f), applyOptions{root: root, dryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(changedPaths(rep)) != 1 || rep.Files[0].Reason != "new" || rep.NeedRestart[0] != "edgev2-modrtd.service" {
		t.Fatalf("dry run report %+v", rep)
	}
	if _, err := os.Stat(filepath.Join(root, f.Path)); !os.IsNotExist(err) {
		t.Fatalf("dry run wrote the file (stat: %v)", err)
	}
}

func TestApplyRefusesUnknownOwnerAndKeepsInstalledFile(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, "etc/edgev2/keyd.toml")
	os.MkdirAll(filepath.Dir(path), 0o755)
	os.WriteFile(path, []byte("old\n"), 0o600)
	f := installFile{Path: "/etc/edgev2/keyd.toml", Owner: "no-such-user-edgev2", Mode: 0o600, Data: []byte("new\n")}
	_, err := apply(context.Background(), compiled(f), applyOptions{root: root})
	if err == nil {
		t.Fatal("apply with an unknown owner succeeded")
	}
	if b, _ := os.ReadFile(path); string(b) != "old\n" {
		t.Fatalf("the installed file was changed to %q", b)
	}
}

func TestRestartPlanRestartsOnlyWithSystemdAndNamesTheRestWithTheReason(t *testing.T) {
	units := []string{"edgev2-certd.service"}
	cases := []struct {
		name      string
		o         applyOptions
		systemd   bool
		now       []string
		noteHas   string
		laterSame bool
	}{
		{"systemd running", applyOptions{}, true, units, "", false},
		{"no systemd", applyOptions{}, false, nil, "systemd is not running", true},
		{"no restart", applyOptions{noRestart: true}, true, nil, "--no-restart", true},
		{"under a root", applyOptions{root: "/img"}, true, nil, "--root", true},
		{"dry run", applyOptions{dryRun: true}, true, nil, "dry run", true},
	}
	for _, c := range cases {
		now, later, note := restartPlan(units, c.o, c.systemd)
		if !reflect.DeepEqual(now, c.now) || (c.laterSame != reflect.DeepEqual(later, units)) || !strings.Contains(note, c.noteHas) {
			t.Errorf("%s: now %v later %v note %q", c.name, now, later, note)
		}
	}
	if now, later, _ := restartPlan(nil, applyOptions{}, true); now != nil || len(later) != 0 {
		t.Errorf("nothing changed: now %v later %v", now, later)
	}
}

func TestApplyRemovesAnInlineKeyWhoseSettingWasRemoved(t *testing.T) {
	root := t.TempDir()
	key := "/etc/edgev2/keyd.device-id.key"
	if err := os.MkdirAll(filepath.Join(root, "/etc/edgev2"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, key), []byte("old secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	gone := installFile{Path: key, Remove: true, Service: "edgev2-keyd.service"}
	o := applyOptions{config: "test.toml", root: root, dryRun: true}
	rep, err := apply(context.Background(), compiled(gone), o)
	if err != nil || len(changedPaths(rep)) != 1 {
		t.Fatalf("dry run: %v, %+v; want the key reported as to be removed", err, rep)
	}
	if _, err := os.Stat(filepath.Join(root, key)); err != nil {
		t.Fatalf("a dry run removed the key: %v", err)
	}
	o.dryRun = false
	rep, err = apply(context.Background(), compiled(gone), o)
	if err != nil || len(rep.Files) != 1 || rep.Files[0].Reason != "removed" || !reflect.DeepEqual(rep.NeedRestart, []string{"edgev2-keyd.service"}) {
		t.Fatalf("apply: %v, %+v; want the key removed and keyd to restart", err, rep)
	}
	if _, err := os.Stat(filepath.Join(root, key)); !os.IsNotExist(err) {
		t.Fatalf("the obsolete key is still there: %v", err)
	}
	rep, err = apply(context.Background(), compiled(gone), o)
	if err != nil || len(rep.Files) != 0 {
		t.Fatalf("second apply: %v, %+v; want nothing to do", err, rep)
	}
}

// TestApplyRestartsOnlyRunningServicesAndSaysSo: try-restart does nothing to
// a stopped unit, so `config apply` must not claim it restarted one; it
// names the stopped ones and how to start them.
func TestApplyRestartsOnlyRunningServicesAndSaysSo(t *testing.T) {
	cases := []struct {
		name        string
		active      map[string]bool
		failOn      string
		restarted   []string
		notRunning  []string
		needRestart []string
		wantErr     bool
	}{
		{"none running", map[string]bool{}, "", []string{}, []string{"edgev2-certd.service", "edgev2-keyd.service"}, []string{}, false},
		{"one running", map[string]bool{"edgev2-keyd.service": true}, "", []string{"edgev2-keyd.service"}, []string{"edgev2-certd.service"}, []string{}, false},
		{"all running", map[string]bool{"edgev2-certd.service": true, "edgev2-keyd.service": true}, "", []string{"edgev2-certd.service", "edgev2-keyd.service"}, []string{}, []string{}, false},
		{"a restart fails", map[string]bool{"edgev2-certd.service": true, "edgev2-keyd.service": true}, "edgev2-certd.service", []string{}, []string{}, []string{"edgev2-certd.service", "edgev2-keyd.service"}, true},
	}
	oldActive, oldRestart := unitActive, tryRestart
	t.Cleanup(func() { unitActive, tryRestart = oldActive, oldRestart })
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var called []string
			unitActive = func(_ context.Context, u string) bool { return c.active[u] }
			tryRestart = func(_ context.Context, u string) error {
				called = append(called, u)
				if u == c.failOn {
					return errors.New("boom")
				}
				return nil
			}
			rep := &applyReport{Restarted: []string{}, NotRunning: []string{}, NeedRestart: []string{}}
			units := []string{"edgev2-certd.service", "edgev2-keyd.service"}
			var err error
			rep.Restarted, rep.NotRunning, err = restart(t.Context(), units)
			if err != nil {
				rep.NeedRestart = units[len(rep.Restarted)+len(rep.NotRunning):]
			}
			if (err != nil) != c.wantErr || !reflect.DeepEqual(rep.Restarted, c.restarted) ||
				!reflect.DeepEqual(rep.NotRunning, c.notRunning) || !reflect.DeepEqual(rep.NeedRestart, c.needRestart) {
				t.Fatalf("restarted %v, not running %v, need restart %v, err %v", rep.Restarted, rep.NotRunning, rep.NeedRestart, err)
			}
			for _, u := range called {
				if !c.active[u] {
					t.Errorf("try-restart called for %s, which does not run", u)
				}
			}
			var out strings.Builder
			printApply(&out, rep)
			for _, u := range c.notRunning {
				if !strings.Contains(out.String(), "not running (nothing to restart)") || !strings.Contains(out.String(), strings.TrimSuffix(u, ".service")) ||
					!strings.Contains(out.String(), "systemctl enable --now") {
					t.Errorf("output does not say %s was not running and how to start it:\n%s", u, out.String())
				}
				if strings.Contains(out.String(), "restarted "+u) {
					t.Errorf("output claims %s was restarted:\n%s", u, out.String())
				}
			}
		})
	}
}
