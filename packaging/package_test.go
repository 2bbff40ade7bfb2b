// Package packaging holds the Debian packaging (packaging/debian), the
// systemd units and D-Bus activation files, and the test that builds the
// package, installs it with dpkg and purges it.
package packaging

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgev2/edgev2/internal/testenv"
)

const (
	pkgName      = "edgev2"
	labcloudName = "edgev2-labcloud"
)

// TestDebianPackageBuildsInstallsAndPurgesCleanly builds the packages with
// build-deb.sh, fails on any lintian error, installs edgev2 with dpkg -i,
// checks the users, files, owners and modes, runs the installed daemons,
// verifies the units, reinstalls, removes and purges the package, and checks
// that nothing of it remains while the service users stay; then the lab
// cloud package installs, runs and purges on its own.
func TestDebianPackageBuildsInstallsAndPurgesCleanly(t *testing.T) {
	requireTools(t)
	for _, p := range []string{pkgName, labcloudName} {
		if installed(t, p) {
			t.Fatalf("package %s is installed on this machine; this test installs and purges it, "+
				"so it refuses to run (fix: dpkg --purge %s, or run the test elsewhere)", p, p)
		}
	}
	usersBefore := lookupUsers(t)

	want := expectedFiles(t)
	out := t.TempDir()
	debs := buildPackages(t, out)
	runLintian(t, filepath.Join(out, changesFile(t, out)))

	// Purge even when a check below fails.
	t.Cleanup(func() {
		for _, p := range []string{pkgName, labcloudName} {
			if !installed(t, p) {
				continue
			}
			if b, err := exec.Command("dpkg", "--purge", p).CombinedOutput(); err != nil {
				t.Errorf("cleanup: dpkg --purge %s: %v\n%s", p, err, b)
			}
		}
	})
	dpkgInstall(t, debs[pkgName])

	listed := dpkgList(t, pkgName)
	checkUsers(t, usersBefore)
	checkInstalledFiles(t, want, listed)
	checkProductExcludesLabcloud(t, listed)
	checkDaemonsRefuseMissingConfig(t)
	checkUpgradeStopsNothing(t)
	checkLinkedAsDebian(t)
	t.Run("installed keyd serves", checkInstalledKeydServes)
	verifyUnits(t)

	// What edgectl and the services would have made: a config file, an
	// operator polkit rule, state with key material.
	made := makeRuntimeFiles(t)

	// Installing again is the upgrade path (postinst configure with the old
	// version): sysusers runs again over existing users, and configuration
	// and state stay.
	dpkgInstall(t, debs[pkgName])
	for _, f := range made {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("reinstalling must keep configuration and state, but %s is gone: %v", f, err)
		}
	}
	checkUsers(t, usersBefore)

	run(t, "dpkg", "--remove", pkgName)
	for _, f := range listed {
		if isDir(f) {
			continue
		}
		if _, err := os.Lstat(f); err == nil {
			t.Errorf("after dpkg --remove, %s (a file of the package) is still there", f)
		}
	}
	for _, f := range made {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("dpkg --remove must keep configuration and state, but %s is gone: %v", f, err)
		}
	}

	run(t, "dpkg", "--purge", pkgName)
	if installed(t, pkgName) {
		t.Errorf("%s is still known to dpkg after --purge", pkgName)
	}
	for _, f := range append(made, "/etc/edgev2", "/var/lib/edgev2", "/usr/libexec/edgev2", "/usr/share/doc/edgev2") {
		if _, err := os.Lstat(f); err == nil {
			t.Errorf("after dpkg --purge, %s is still there", f)
		}
	}
	// Debian never deletes system users: files they own elsewhere must not
	// pass to a later user with the same uid.
	for name, after := range lookupUsers(t) {
		if after == nil {
			t.Errorf("dpkg --purge deleted user %s; system users must stay", name)
		}
	}

	t.Run("labcloud package stands alone", func(t *testing.T) { checkLabcloudPackage(t, debs[labcloudName]) })
}

// checkLabcloudPackage installs edgev2-labcloud without edgev2 (it must not
// need it), runs it, and purges it.
func checkLabcloudPackage(t *testing.T, deb string) {
	dpkgInstall(t, deb)
	listed := dpkgList(t, labcloudName)
	for _, w := range []wantFile{
		{path: "/usr/bin/edgev2-labcloud", mode: 0o755},
		{path: "/usr/share/man/man1/edgev2-labcloud.1.gz", mode: 0o644},
	} {
		fi, err := os.Stat(w.path)
		if err != nil {
			t.Errorf("%s: %v", w.path, err)
			continue
		}
		if fi.Mode() != w.mode {
			t.Errorf("%s: mode %v, want %v", w.path, fi.Mode(), w.mode)
		}
	}
	out, err := exec.Command("/usr/bin/edgev2-labcloud").CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 78 || !strings.Contains(string(out), "--state") {
		t.Errorf("edgev2-labcloud without --state: %v, want exit 78 naming --state\n%s", err, out)
	}
	run(t, "dpkg", "--purge", labcloudName)
	for _, f := range listed {
		if isDir(f) {
			continue
		}
		if _, err := os.Lstat(f); err == nil {
			t.Errorf("after dpkg --purge %s, %s is still there", labcloudName, f)
		}
	}
}

// TestSysusersCreatesServiceUsersOnFreshSystem runs systemd-sysusers with the
// package's sysusers.d file on an empty root, as on a machine where the users
// do not exist yet: system users, own groups, no home, no login shell.
func TestSysusersCreatesServiceUsersOnFreshSystem(t *testing.T) {
	testenv.RequireRoot(t)
	if _, err := exec.LookPath("systemd-sysusers"); err != nil {
		testenv.Missing(t, "systemd-sysusers", "the package creates its users with it (package systemd)")
	}
	root := t.TempDir()
	for _, d := range []string{"etc", "usr/lib/sysusers.d"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"etc/passwd", "etc/group"} {
		if err := os.WriteFile(filepath.Join(root, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	src, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "packaging", "debian", "edgev2.sysusers"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "usr/lib/sysusers.d/edgev2.conf"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "systemd-sysusers", "--root="+root, "edgev2.conf")

	passwd, err := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	group, err := os.ReadFile(filepath.Join(root, "etc/group"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range serviceUsers {
		t.Run(name, func(t *testing.T) {
			f := entry(string(passwd), name)
			if f == nil || len(f) != 7 {
				t.Fatalf("no passwd entry for %s in\n%s", name, passwd)
			}
			if f[5] != "/nonexistent" || f[6] != "/usr/sbin/nologin" {
				t.Errorf("%s: home %q shell %q, want /nonexistent and /usr/sbin/nologin", name, f[5], f[6])
			}
			var uid int
			if _, err := fmt.Sscan(f[2], &uid); err != nil || uid <= 0 || uid >= 1000 {
				t.Errorf("%s: uid %q is not a system uid (1..999)", name, f[2])
			}
			g := entry(string(group), name)
			if g == nil || g[2] != f[3] {
				t.Errorf("%s: primary group %q is not its own group %v", name, f[3], g)
			}
		})
	}
}

// entry returns the colon-separated fields of name's line in a passwd or
// group file, or nil.
func entry(file, name string) []string {
	for _, line := range strings.Split(file, "\n") {
		if f := strings.Split(line, ":"); f[0] == name {
			return f
		}
	}
	return nil
}

// requireTools reports the parts the package test needs.
func requireTools(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t)
	for tool, pkg := range map[string]string{
		"dpkg-buildpackage": "dpkg-dev", "dh": "debhelper", "lintian": "lintian",
		"dpkg": "dpkg", "systemd-sysusers": "systemd",
	} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, tool, "building and installing the Debian package needs it (package "+pkg+")")
		}
	}
	if _, err := exec.LookPath("go"); err != nil {
		if _, err := os.Stat("/usr/local/go/bin/go"); err != nil {
			testenv.Missing(t, "go", "debian/rules builds with the Go toolchain on PATH or in /usr/local/go/bin")
		}
	}
}

// buildPackages runs build-deb.sh on the work tree (what go test tests) and
// returns the .deb files by package name.
func buildPackages(t *testing.T, out string) map[string]string {
	t.Helper()
	start := time.Now()
	cmd := exec.Command(filepath.Join(testenv.RepoRoot(), "packaging", "build-deb.sh"), "--worktree", out)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("build-deb.sh: %v\n%s", err, tail(b, 60))
	}
	t.Logf("built the packages in %v", time.Since(start).Round(time.Second))
	debs := map[string]string{}
	files, _ := filepath.Glob(filepath.Join(out, "*.deb"))
	for _, f := range files {
		debs[strings.SplitN(filepath.Base(f), "_", 2)[0]] = f
	}
	for _, want := range []string{"edgev2", "edgev2-labcloud"} {
		if debs[want] == "" {
			t.Fatalf("build-deb.sh made no %s package; it made %v\n%s", want, files, tail(b, 30))
		}
	}
	return debs
}

func changesFile(t *testing.T, dir string) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.changes"))
	if len(files) != 1 {
		t.Fatalf("want one .changes file in %s, found %v", dir, files)
	}
	return filepath.Base(files[0])
}

// runLintian prints every lintian line and fails on errors (E:).
func runLintian(t *testing.T, changes string) {
	t.Helper()
	b, err := exec.Command("lintian", "--pedantic", changes).CombinedOutput()
	t.Logf("lintian:\n%s", b)
	var errs []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "E: ") {
			errs = append(errs, line)
		}
	}
	if len(errs) > 0 {
		t.Errorf("lintian reports %d error(s):\n%s", len(errs), strings.Join(errs, "\n"))
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run lintian: %v", err)
	}
}

// dpkgInstall installs deb, naming missing dependencies clearly.
func dpkgInstall(t *testing.T, deb string) {
	t.Helper()
	b, err := exec.Command("dpkg", "--install", deb).CombinedOutput()
	if err == nil {
		return
	}
	if bytes.Contains(b, []byte("dependency problems")) {
		var missing []string
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "is not installed") || strings.Contains(line, "depends on") {
				missing = append(missing, strings.TrimSpace(line))
			}
		}
		t.Fatalf("dpkg --install %s: dependencies are missing (fix: `make deps` installs them):\n%s",
			filepath.Base(deb), strings.Join(missing, "\n"))
	}
	t.Fatalf("dpkg --install %s: %v\n%s", filepath.Base(deb), err, b)
}

// dpkgList returns the paths dpkg lists for the installed package.
func dpkgList(t *testing.T, pkg string) []string {
	t.Helper()
	b := run(t, "dpkg", "--listfiles", pkg)
	var paths []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line != "" && line != "/." {
			paths = append(paths, line)
		}
	}
	return paths
}

// installed reports whether dpkg knows the package in any state but
// not-installed (an unconfigured or half-installed package counts).
func installed(t *testing.T, pkg string) bool {
	t.Helper()
	b, err := exec.Command("dpkg-query", "-W", "-f=${db:Status-Status}", pkg).Output()
	if err != nil {
		return false // "no packages found matching"
	}
	s := strings.TrimSpace(string(b))
	return s != "" && s != "not-installed"
}

// lookupUsers returns the service users that exist (nil for missing ones).
func lookupUsers(t *testing.T) map[string]*user.User {
	t.Helper()
	users := map[string]*user.User{}
	for _, name := range serviceUsers {
		u, err := user.Lookup(name)
		if err != nil && !errors.As(err, new(user.UnknownUserError)) {
			t.Fatalf("look up user %s: %v", name, err)
		}
		users[name] = u
	}
	return users
}

// isDir reports whether path is a directory or a link to one (/lib is a
// link to usr/lib on merged-/usr systems).
func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

// run runs a command and fails the test with its output if it fails.
func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	b, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, tail(b, 40))
	}
	return b
}

// tail returns the last n lines of b.
func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{"..."}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// checkUpgradeStopsNothing: an upgrade must restart exactly the services that
// were running (the postinst's try-restart) and keep modules running, so no
// maintainer script may stop a unit on upgrade (debhelper's preinst-systemd-stop
// snippet, made unless --no-stop-on-upgrade). The booted system test checks
// the behaviour; this catches the packaging mistake in every `make test`.
func checkUpgradeStopsNothing(t *testing.T) {
	t.Helper()
	for _, script := range []string{"preinst", "prerm"} {
		b, err := os.ReadFile(filepath.Join("/var/lib/dpkg/info", pkgName+"."+script))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "deb-systemd-invoke stop") && strings.Contains(l, "upgrade") ||
				script == "preinst" && strings.Contains(l, "deb-systemd-invoke stop") {
				t.Errorf("%s.%s stops units on upgrade (%q); running services and modules must survive an upgrade "+
					"(dh_installsystemd --no-stop-on-upgrade)", pkgName, script, strings.TrimSpace(l))
			}
		}
	}
}
