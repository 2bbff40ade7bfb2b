package packaging

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/edgev2/edgev2/internal/testenv"
)

// serviceUsers are the users the package's sysusers.d file declares.
var serviceUsers = []string{"edgekeys", "edgecerts", "edgeid"}

// daemons are installed in /usr/libexec/edgev2, one unit each.
var daemons = []string{"edgev2-keyd", "edgev2-certd", "edgev2-identityd", "edgev2-modrtd"}

// busNames are the services' D-Bus names.
var busNames = []string{"org.edgev2.Keys1", "org.edgev2.Certificates1", "org.edgev2.Identity1", "org.edgev2.ModuleRuntime1"}

// wantFile is an installed path with its mode, owned by root:root; src is
// the repository file it must equal ("" when it is generated) and before its
// bytes when the build started.
type wantFile struct {
	path   string
	mode   fs.FileMode
	src    string
	before []byte
}

// expectedFiles lists what the edgev2 package must install, from the
// repository's own files so that a file added there is checked too.
func expectedFiles(t *testing.T) []wantFile {
	t.Helper()
	repo := testenv.RepoRoot()
	var want []wantFile
	add := func(dir string, mode fs.FileMode, srcs ...string) {
		for _, src := range srcs {
			want = append(want, wantFile{path: filepath.Join(dir, filepath.Base(src)), mode: mode, src: src})
		}
	}
	glob := func(pattern string) []string {
		files, _ := filepath.Glob(filepath.Join(repo, pattern))
		if len(files) == 0 {
			t.Fatalf("no %s in the repository", pattern)
		}
		return files
	}
	for _, d := range daemons {
		want = append(want, wantFile{path: "/usr/libexec/edgev2/" + d, mode: 0o755})
		add("/lib/systemd/system", 0o644, filepath.Join(repo, "packaging/systemd", d+".service"))
	}
	for _, n := range busNames {
		add("/usr/share/dbus-1/system-services", 0o644, filepath.Join(repo, "packaging/dbus", n+".service"))
		add("/usr/share/dbus-1/system.d", 0o644, filepath.Join(repo, "policy", n+".conf"))
	}
	add("/usr/share/dbus-1/interfaces", 0o644, glob("dbus/org.edgev2.*.xml")...)
	add("/usr/share/polkit-1/actions", 0o644, glob("policy/*.policy")...)
	add("/usr/share/doc/edgev2/examples", 0o644, glob("packaging/*.toml.example")...)
	want = append(want,
		wantFile{path: "/usr/lib/sysusers.d/edgev2.conf", mode: 0o644, src: filepath.Join(repo, "packaging/debian/edgev2.sysusers")},
		wantFile{path: "/usr/share/man/man1/edgectl.1.gz", mode: 0o644},
		wantFile{path: "/usr/share/doc/edgev2/copyright", mode: 0o644, src: filepath.Join(repo, "packaging/debian/copyright")},
		wantFile{path: "/usr/share/doc/edgev2/README.md", mode: 0o644, src: filepath.Join(repo, "README.md")},
		wantFile{path: "/etc/edgev2", mode: fs.ModeDir | 0o755},
	)
	// The PKCS#11 module, in p11-kit's module directory, and its registration.
	if multiarch, err := exec.Command("dpkg-architecture", "-qDEB_HOST_MULTIARCH").Output(); err == nil {
		want = append(want, wantFile{path: "/usr/lib/" + strings.TrimSpace(string(multiarch)) + "/pkcs11/libedgev2-pkcs11.so", mode: 0o644})
	}
	add("/usr/share/p11-kit/modules", 0o644, filepath.Join(repo, "packaging/p11-kit/edgev2.module"))
	// edgectl is in the package once cmd/edgectl exists.
	if _, err := os.Stat(filepath.Join(repo, "cmd/edgectl")); err == nil {
		want = append(want, wantFile{path: "/usr/bin/edgectl", mode: 0o755})
	}
	for i, w := range want {
		if w.src != "" {
			b, err := os.ReadFile(w.src)
			if err != nil {
				t.Fatal(err)
			}
			want[i].before = b
		}
	}
	return want
}

// checkInstalledFiles checks every expected file: listed by dpkg, a regular
// file (or directory) with the intended mode, root-owned, and the same bytes
// as the repository's file (as it was when the build started, or is now: in
// a shared work tree someone may edit it while the package builds).
func checkInstalledFiles(t *testing.T, want []wantFile, listed []string) {
	t.Helper()
	inList := map[string]bool{}
	for _, p := range listed {
		inList[p] = true
	}
	for _, w := range want {
		t.Run(strings.TrimPrefix(w.path, "/"), func(t *testing.T) {
			if !inList[w.path] {
				t.Errorf("dpkg -L %s does not list %s", pkgName, w.path)
			}
			fi, err := os.Lstat(w.path)
			if err != nil {
				t.Fatalf("not installed: %v", err)
			}
			if fi.Mode() != w.mode {
				t.Errorf("mode %v, want %v", fi.Mode(), w.mode)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if st.Uid != 0 || st.Gid != 0 {
				t.Errorf("owner %d:%d, want root:root", st.Uid, st.Gid)
			}
			if w.src == "" {
				return
			}
			got, err := os.ReadFile(w.path)
			if err != nil {
				t.Fatal(err)
			}
			src, err := os.ReadFile(w.src)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, src) && !bytes.Equal(got, w.before) {
				t.Errorf("differs from the repository's %s", w.src)
			}
		})
	}
}

// checkProductExcludesLabcloud: the lab cloud stand-in is its own package.
func checkProductExcludesLabcloud(t *testing.T, listed []string) {
	t.Helper()
	for _, p := range listed {
		if strings.Contains(p, "labcloud") && !strings.HasSuffix(p, ".md") {
			t.Errorf("the product package ships %s; the lab cloud belongs in edgev2-labcloud", p)
		}
	}
}

// checkUsers: the service users exist with no login shell and their own
// group, and users that existed before (made by testenv's useradd) kept
// their uid.
func checkUsers(t *testing.T, before map[string]*user.User) {
	t.Helper()
	passwd, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range serviceUsers {
		f := entry(string(passwd), name)
		if f == nil || len(f) != 7 {
			t.Errorf("user %s does not exist after install", name)
			continue
		}
		if !strings.HasSuffix(f[6], "/nologin") && f[6] != "/bin/false" {
			t.Errorf("user %s has login shell %q, want nologin", name, f[6])
		}
		u, err := user.Lookup(name)
		if err != nil {
			t.Errorf("look up %s: %v", name, err)
			continue
		}
		g, err := user.LookupGroupId(u.Gid)
		if err != nil || g.Name != name {
			t.Errorf("user %s: primary group %s (%v), want its own group", name, u.Gid, err)
		}
		if b := before[name]; b != nil && b.Uid != u.Uid {
			t.Errorf("user %s existed with uid %s and now has uid %s", name, b.Uid, u.Uid)
		}
	}
}

// checkDaemonsRefuseMissingConfig runs each installed daemon with a bad
// configuration file: it must start (the binary works on this system) and
// exit 78 (EX_CONFIG), which the units' RestartPreventExitStatus expects. A
// missing file is not fatal: the daemon then owns its name and answers
// NotConfigured (internal/daemon's activation test); with no bus to reach
// it exits 1.
func checkDaemonsRefuseMissingConfig(t *testing.T) {
	t.Helper()
	bad := filepath.Join(t.TempDir(), "bad.toml")
	if err := os.WriteFile(bad, []byte("this is = = not toml\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.toml")
	for _, d := range daemons {
		for _, c := range []struct {
			config string
			code   int
		}{{bad, 78}, {missing, 1}} {
			cmd := exec.Command("/usr/libexec/edgev2/"+d, "--config", c.config)
			cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "DBUS_SYSTEM_BUS_ADDRESS=unix:path=/nonexistent"}
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != c.code {
				t.Errorf("%s --config %s: %v, want exit status %d\n%s", d, c.config, err, c.code, out)
			}
		}
	}
}

// verifyUnits runs systemd-analyze verify on the installed units; it works
// without systemd as PID 1. Warnings are logged, errors (non-zero exit) fail.
func verifyUnits(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		testenv.Missing(t, "systemd-analyze", "verifying the units needs it (package systemd)")
	}
	args := []string{"verify"}
	for _, d := range daemons {
		args = append(args, "/lib/systemd/system/"+d+".service")
	}
	out, err := exec.Command("systemd-analyze", args...).CombinedOutput()
	if len(out) > 0 {
		t.Logf("systemd-analyze verify:\n%s", out)
	}
	if err != nil {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// makeRuntimeFiles writes what edgectl and the services make at run time
// (a service configuration, the operator polkit rules, state), which remove
// must keep and purge must delete. It returns their paths.
func makeRuntimeFiles(t *testing.T) []string {
	t.Helper()
	const rules = "/etc/polkit-1/rules.d/60-edgev2-principals.rules"
	const serviceRules = "/etc/polkit-1/rules.d/50-edgev2-services.rules"
	for _, f := range []string{rules, serviceRules} {
		if _, err := os.Stat(f); err == nil {
			t.Fatalf("%s exists before the test; purge would delete it (fix: move it away)", f)
		}
	}
	files := map[string]string{
		"/etc/edgev2/keyd.toml":       "# written by the package test\n",
		rules:                         "// written by the package test; grants nothing\n",
		serviceRules:                  "// written by the package test; grants nothing\n",
		"/var/lib/edgev2/keyd/state":  "key material stand-in\n",
		"/var/lib/edgev2/certd/certs": "certificate stand-in\n",
	}
	var paths []string
	for path, data := range files {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(path) })
		paths = append(paths, path)
	}
	return paths
}

// checkInstalledKeydServes runs the installed keyd (PIE, externally linked,
// cgo PKCS#11 as packaged) as edgekeys on a private bus with polkitd and a
// SoftHSM token, makes a key in the token and signs with it; then the
// installed edgectl lists that key over the same bus.
func checkInstalledKeydServes(t *testing.T) {
	t.Helper()
	uid, gid := testenv.EnsureUser(t, "edgekeys")
	bus := testenv.StartBus(t)
	testenv.StartPolkit(t, bus)
	dir := testenv.SharedTempDir(t, "pkg-keyd")
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, uid, gid); err != nil {
		t.Fatal(err)
	}
	tok := testenv.NewSoftHSMToken(t, "edgev2-pkg", uid, gid)
	cfg := filepath.Join(dir, "keyd.toml")
	data := fmt.Sprintf("homedir = %q\npkcs11_lib_path = %q\npkcs11_base_slot = %q\n", home, tok.LibPath, tok.URI())
	if err := os.WriteFile(cfg, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(cfg, uid, gid); err != nil {
		t.Fatal(err)
	}
	testenv.StartService(t, bus, testenv.ServiceOptions{
		Binary:  "/usr/libexec/edgev2/edgev2-keyd",
		Args:    []string{"--config", cfg},
		User:    "edgekeys",
		Env:     tok.Env(),
		BusName: "org.edgev2.Keys1",
	})
	out, errOut, code := bus.Busctl(t, "root", "call", "org.edgev2.Keys1", "/org/edgev2/Keys1",
		"org.edgev2.Keys1", "CreateKeyPair", "ssa{sv}", "pkg-test", "ec-p256", "0")
	if code != 0 || !strings.Contains(out, "/org/edgev2/Keys1/keys/pkg_2dtest") {
		t.Fatalf("CreateKeyPair on the installed keyd: exit %d: %s%s", code, out, errOut)
	}
	out, errOut, code = bus.Busctl(t, "root", "call", "org.edgev2.Keys1", "/org/edgev2/Keys1/keys/pkg_2dtest",
		"org.edgev2.Keys1.Key", "Sign", "saya{sv}", "ecdsa-sha256", "5", "104", "101", "108", "108", "111", "0")
	if code != 0 || !strings.HasPrefix(out, "ay ") {
		t.Fatalf("Sign on the installed keyd: exit %d: %s%s", code, out, errOut)
	}
	if _, err := os.Stat("/usr/bin/edgectl"); err != nil {
		return
	}
	out, errOut, code = testenv.RunAs(t, "root", []string{"DBUS_SYSTEM_BUS_ADDRESS=" + bus.Address},
		"/usr/bin/edgectl", "keys", "list", "--json")
	if code != 0 || !strings.Contains(out, "pkg-test") {
		t.Errorf("installed edgectl keys list --json: exit %d, want the key pkg-test:\n%s%s", code, out, errOut)
	}
}

// dtRELR is DT_RELR (glibc 2.36's packed relative relocations), which
// debug/elf does not name.
const dtRELR elf.DynTag = 36

// checkLinkedAsDebian checks the installed programs (the daemons and
// edgectl) are linked as debian/rules says: PIE, loaded with full RELRO
// (GNU_RELRO and BIND_NOW), and on amd64 with packed relative relocations,
// which `make bench` measures resident memory with.
func checkLinkedAsDebian(t *testing.T) {
	t.Helper()
	programs := []string{"/usr/bin/edgectl"}
	for _, d := range daemons {
		programs = append(programs, "/usr/libexec/edgev2/"+d)
	}
	for _, p := range programs {
		f, err := elf.Open(p)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		relro := false
		for _, prog := range f.Progs {
			relro = relro || prog.Type == elf.PT_GNU_RELRO
		}
		flags, _ := f.DynValue(elf.DT_FLAGS)
		flags1, _ := f.DynValue(elf.DT_FLAGS_1)
		bindNow := slices.ContainsFunc(flags, func(v uint64) bool { return v&uint64(elf.DF_BIND_NOW) != 0 }) ||
			slices.ContainsFunc(flags1, func(v uint64) bool { return v&uint64(elf.DF_1_NOW) != 0 })
		relr, _ := f.DynValue(dtRELR)
		f.Close()
		if f.Type != elf.ET_DYN || !relro || !bindNow {
			t.Errorf("%s: type %v, GNU_RELRO %v, BIND_NOW %v: want a PIE (ET_DYN) with full RELRO", p, f.Type, relro, bindNow)
		}
		if runtime.GOARCH == "amd64" && len(relr) == 0 {
			t.Errorf("%s has no DT_RELR: debian/rules packs relative relocations on amd64 (-z pack-relative-relocs)", p)
		}
	}
}
