package packaging

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgev2/edgev2/internal/testenv"
)

// crossArch is a Debian architecture edgev2 is cross-built for, with what
// running its binaries under qemu-user on this machine takes.
type crossArch struct {
	deb     string      // Debian architecture
	goarch  string      // GOARCH
	goarm   string      // GOARM, for armhf
	cc      string      // the cross compiler (the Makefile's CC for this ARCH)
	qemu    string      // qemu-user, static: runs without binfmt registration
	machine elf.Machine // what the built binary must be
	class   elf.Class
	loader  string // the dynamic loader, from libc6:<arch> (multiarch)
	triplet string
}

var crossArchs = []crossArch{
	{deb: "arm64", goarch: "arm64", cc: "aarch64-linux-gnu-gcc", qemu: "qemu-aarch64-static",
		machine: elf.EM_AARCH64, class: elf.ELFCLASS64, loader: "/lib/ld-linux-aarch64.so.1", triplet: "aarch64-linux-gnu"},
	{deb: "armhf", goarch: "arm", goarm: "7", cc: "arm-linux-gnueabihf-gcc", qemu: "qemu-arm-static",
		machine: elf.EM_ARM, class: elf.ELFCLASS32, loader: "/lib/ld-linux-armhf.so.3", triplet: "arm-linux-gnueabihf"},
}

// crossSoftHSM is where `make deps` (packaging/cross-deps.sh) unpacks each
// architecture's libsofthsm2, which multiarch cannot install next to amd64's.
func (a crossArch) softHSMLib() string {
	return filepath.Join("/var/cache/edgev2-cross", a.deb, "root/usr/lib", a.triplet, "softhsm/libsofthsm2.so")
}

// TestCrossBuiltKeydSignsUnderQemu runs the arm64 and armhf edgev2-keyd --
// cross-built with cgo as the package builds it (PIE, external linking), or
// taken from the packages in $EDGEV2_CROSS_DEBS (.ci/run points it at make
// deb-all's output) -- under qemu-user on a private bus with polkitd, once
// with the file engine and once with the target's own SoftHSM2 module
// loaded into the emulated keyd. The amd64 edgectl creates EC and RSA keys
// over the bus and signs; openssl verifies each signature against the public
// key the service reports. An ordinary user signs with the one key a polkit
// rule grants and is refused the others (CheckAuthorization with details
// from the emulated, on armhf 32-bit, daemon).
func TestCrossBuiltKeydSignsUnderQemu(t *testing.T) {
	testenv.RequireRoot(t)
	for _, tool := range []string{"openssl", "softhsm2-util"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, tool, err.Error())
		}
	}
	edgectl := testenv.BuildBinary(t, "./cmd/edgectl")
	uid, gid := testenv.EnsureUser(t, "edgekeys")
	bus := testenv.StartBus(t)
	pk := testenv.StartPolkit(t, bus)
	pk.AddRule(t, "cross-granted", testenv.GrantRule("org.edgev2.keys.use", testenv.OtherUser, "key_id", "cross-granted"))

	for _, a := range crossArchs {
		t.Run(a.deb, func(t *testing.T) {
			requireCross(t, a)
			keyd := crossKeyd(t, a)
			t.Run("file engine", func(t *testing.T) {
				checkCrossKeyd(t, a, bus, edgectl, keyd, uid, gid, nil)
			})
			t.Run("pkcs11 module loads", func(t *testing.T) {
				checkCrossModuleLoads(t, a)
			})
			t.Run("softhsm", func(t *testing.T) {
				tok := testenv.NewSoftHSMToken(t, "cross-"+a.deb, uid, gid)
				if a.class == elf.ELFCLASS32 {
					tokensOnTmpfs(t, tok)
				}
				checkCrossKeyd(t, a, bus, edgectl, keyd, uid, gid, tok)
			})
		})
	}
}

// requireCross fails under CI=true (skips elsewhere) when something the
// cross build or the emulation needs is missing, naming it.
func requireCross(t *testing.T, a crossArch) {
	t.Helper()
	if _, err := exec.LookPath(a.qemu); err != nil {
		testenv.Missing(t, "qemu-user-static", a.qemu+" not on PATH")
	}
	if os.Getenv("EDGEV2_CROSS_DEBS") == "" {
		if _, err := exec.LookPath(a.cc); err != nil {
			testenv.Missing(t, "the "+a.deb+" cross compiler", a.cc+" not on PATH (gcc-"+a.triplet+", libc6-dev-"+a.deb+"-cross)")
		}
	}
	if _, err := os.Stat(a.loader); err != nil {
		testenv.Missing(t, "libc6:"+a.deb, a.loader+" missing (multiarch: dpkg --add-architecture "+a.deb+")")
	}
	if _, err := os.Stat(a.softHSMLib()); err != nil {
		testenv.Missing(t, "libsofthsm2:"+a.deb, a.softHSMLib()+" missing (packaging/cross-deps.sh softhsm "+a.deb+")")
	}
}

// crossKeyd returns the cross-built keyd for a: from the package in
// $EDGEV2_CROSS_DEBS when set, else built here with the package's flags.
// Either way it must be an ELF of a's machine, dynamically linked (cgo).
func crossKeyd(t *testing.T, a crossArch) string {
	t.Helper()
	dir := testenv.SharedTempDir(t, "cross-"+a.deb)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "edgev2-keyd")
	if debs := os.Getenv("EDGEV2_CROSS_DEBS"); debs != "" {
		// Relative to the repository (.ci/run passes bin/deb), not to
		// this package's directory, where go test runs.
		if !filepath.IsAbs(debs) {
			debs = filepath.Join(testenv.RepoRoot(), debs)
		}
		matches, _ := filepath.Glob(filepath.Join(debs, "edgev2_*_"+a.deb+".deb"))
		if len(matches) != 1 {
			t.Fatalf("EDGEV2_CROSS_DEBS=%s: want one edgev2_*_%s.deb there, found %v (make deb-all)", debs, a.deb, matches)
		}
		extractFromDeb(t, matches[0], "./usr/libexec/edgev2/edgev2-keyd", out)
	} else {
		goTool, err := exec.LookPath("go")
		if err != nil {
			t.Fatalf("go tool not in PATH: %v", err)
		}
		cmd := exec.Command(goTool, "build", "-trimpath", "-buildmode=pie",
			"-ldflags=-linkmode=external -extldflags=-Wl,-z,relro,-z,now", "-o", out, "./cmd/edgev2-keyd")
		cmd.Dir = testenv.RepoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1", "GOOS=linux", "GOARCH="+a.goarch, "GOARM="+a.goarm, "CC="+a.cc)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("cross-build keyd for %s: %v\n%s", a.deb, err, b)
		}
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatalf("keyd for %s: %v", a.deb, err)
	}
	defer f.Close()
	if f.Machine != a.machine || f.Class != a.class {
		t.Fatalf("keyd for %s is %v %v, want %v %v", a.deb, f.Machine, f.Class, a.machine, a.class)
	}
	interp := ""
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b, _ := io.ReadAll(p.Open())
			interp = strings.TrimRight(string(b), "\x00")
		}
	}
	if interp != a.loader {
		t.Fatalf("keyd for %s asks for loader %q, want %q (cgo, dynamically linked)", a.deb, interp, a.loader)
	}
	if err := os.Chmod(out, 0o755); err != nil {
		t.Fatal(err)
	}
	return out
}

// extractFromDeb copies member (a path in the data tarball, "./usr/...")
// of the .deb to dst, with dpkg-deb --fsys-tarfile.
func extractFromDeb(t *testing.T, deb, member, dst string) {
	t.Helper()
	b, err := exec.Command("dpkg-deb", "--fsys-tarfile", deb).Output()
	if err != nil {
		t.Fatalf("dpkg-deb --fsys-tarfile %s: %v", deb, err)
	}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			t.Fatalf("%s has no %s", deb, member)
		}
		if err != nil {
			t.Fatalf("read %s: %v", deb, err)
		}
		if h.Name != member {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o755); err != nil {
			t.Fatal(err)
		}
		return
	}
}

type crossKey struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	Location  string `json:"location"`
	PublicKey string `json:"public_key"`
}

// checkCrossKeyd runs keyd under qemu as edgekeys with the file engine (tok
// nil) or with tok in the target's SoftHSM2, then creates keys and signs
// through the amd64 edgectl and verifies with openssl.
func checkCrossKeyd(t *testing.T, a crossArch, bus *testenv.Bus, edgectl, keyd string, uid, gid int, tok *testenv.SoftHSMToken) {
	dir := testenv.SharedTempDir(t, "cross-keyd")
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, uid, gid); err != nil {
		t.Fatal(err)
	}
	cfgText := fmt.Sprintf("homedir = %q\n", home)
	var env []string
	wantEngine := "file"
	if tok != nil {
		cfgText += fmt.Sprintf("pkcs11_lib_path = %q\npkcs11_base_slot = %q\n", a.softHSMLib(), tok.URI())
		env = tok.Env()
		wantEngine = "pkcs11"
	}
	cfg := filepath.Join(dir, "keyd.toml")
	if err := os.WriteFile(cfg, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(cfg, uid, gid); err != nil {
		t.Fatal(err)
	}
	svc := testenv.StartService(t, bus, testenv.ServiceOptions{
		Binary:  mustLookPath(t, a.qemu),
		Args:    []string{keyd, "--config", cfg},
		User:    "edgekeys",
		Env:     env,
		BusName: "org.edgev2.Keys1",
	})
	out, errOut, code := bus.Busctl(t, "root", "get-property", "org.edgev2.Keys1", "/org/edgev2/Keys1", "org.edgev2.Keys1", "Engine")
	if code != 0 || !strings.Contains(out, wantEngine) {
		t.Fatalf("Engine of the %s keyd: exit %d: %s%s, want %q", a.deb, code, out, errOut, wantEngine)
	}

	edge := func(user string, args ...string) (string, string, int) {
		return testenv.RunAs(t, user, []string{"DBUS_SYSTEM_BUS_ADDRESS=" + bus.Address}, edgectl, args...)
	}
	for _, k := range []struct{ id, typ string }{
		{"cross-ec", "ec-p256"},
		{"cross-rsa", "rsa-2048"},
		{"cross-granted", "ec-p256"},
	} {
		out, errOut, code := edge("root", "keys", "create", k.id, "--type", k.typ, "--json")
		var key crossKey
		if code != 0 || json.Unmarshal([]byte(out), &key) != nil || key.Type != k.typ || key.PublicKey == "" {
			t.Fatalf("edgectl keys create %s --type %s on the %s keyd: exit %d: %s%s", k.id, k.typ, a.deb, code, out, errOut)
		}
		if inToken := strings.HasPrefix(key.Location, "pkcs11:"); inToken != (tok != nil) {
			t.Errorf("key %s is at %q; want it in the token: %v", k.id, key.Location, tok != nil)
		}
		data := "firmware " + a.deb + " " + k.id
		out, errOut, code = edge("root", "keys", "sign", k.id, "--data", data)
		if code != 0 {
			t.Fatalf("edgectl keys sign %s on the %s keyd: exit %d: %s", k.id, a.deb, code, errOut)
		}
		opensslVerify(t, key.PublicKey, out, data)
	}

	// polkit decides for an ordinary user, with the key id in the details.
	out, errOut, code = edge(testenv.OtherUser, "keys", "sign", "cross-granted", "--data", "telemetry")
	if code != 0 {
		t.Fatalf("%s signing with cross-granted (granted by a rule) on the %s keyd: exit %d: %s", testenv.OtherUser, a.deb, code, errOut)
	}
	out, errOut, code = edge(testenv.OtherUser, "keys", "sign", "cross-ec", "--data", "telemetry")
	if code == 0 || !strings.Contains(errOut, "org.edgev2.keys.use") {
		t.Fatalf("%s signing with cross-ec (no grant) on the %s keyd: exit %d: %s%s; want a refusal naming org.edgev2.keys.use", testenv.OtherUser, a.deb, code, out, errOut)
	}
	if code := svc.Stop(t); code != 0 {
		t.Errorf("the %s keyd exited %d on SIGTERM, want 0\n%s", a.deb, code, svc.Output())
	}
}

// opensslVerify checks sigB64 over data with the DER SubjectPublicKeyInfo
// pubB64, by openssl dgst -sha256 -verify (ECDSA and RSA PKCS#1 v1.5).
func opensslVerify(t *testing.T, pubB64, sigB64, data string) {
	t.Helper()
	dir := t.TempDir()
	der, err := base64.StdEncoding.DecodeString(pubB64)
	if err != nil {
		t.Fatalf("public key is not base64: %v", err)
	}
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(sigB64))
	if err != nil {
		t.Fatalf("signature %q is not base64: %v", sigB64, err)
	}
	files := map[string][]byte{"pub.der": der, "sig": sig, "data": []byte(data)}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("openssl", "dgst", "-sha256", "-keyform", "DER", "-verify", "pub.der", "-signature", "sig", "data")
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(b), "Verified OK") {
		t.Fatalf("openssl does not verify the signature over %q: %v\n%s", data, err, b)
	}
}

func mustLookPath(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// tokensOnTmpfs moves tok's token directory to tmpfs and points its
// softhsm2.conf there. A 32-bit SoftHSM under qemu-user lists the token
// directory with the 32-bit readdir, and the host kernel, which sees a
// 64-bit process, gives ext4's 64-bit directory hashes as offsets: glibc
// fails with EOVERFLOW and SoftHSM sees no token. tmpfs offsets are small.
// (On 32-bit hardware the kernel gives ext4 32-bit hashes.)
func tokensOnTmpfs(t *testing.T, tok *testenv.SoftHSMToken) {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "edgev2-cross-softhsm-")
	if err != nil {
		testenv.Missing(t, "tmpfs on /dev/shm", err.Error())
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tokens := filepath.Join(dir, "tokens")
	if b, err := exec.Command("cp", "-a", filepath.Join(tok.Dir, "tokens"), tokens).CombinedOutput(); err != nil {
		t.Fatalf("copy the token directory to tmpfs: %v\n%s", err, b)
	}
	conf, err := os.ReadFile(tok.Conf)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(conf), "directories.tokendir = "+filepath.Join(tok.Dir, "tokens"), "directories.tokendir = "+tokens, 1)
	if text == string(conf) {
		t.Fatalf("%s names no tokendir under %s:\n%s", tok.Conf, tok.Dir, conf)
	}
	if err := os.WriteFile(tok.Conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// crossModuleLoader dlopens a PKCS#11 module with RTLD_NOW (every NEEDED
// library and symbol resolved by the target's loader) and calls its
// C_GetFunctionList, which must return CKR_OK and a version 2 table.
const crossModuleLoader = `#include <dlfcn.h>
#include <stdio.h>
#include <p11-kit/pkcs11.h>
int main(int argc, char **argv) {
	void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	if (!h) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 1; }
	CK_C_GetFunctionList get = (CK_C_GetFunctionList)dlsym(h, "C_GetFunctionList");
	if (!get) { fprintf(stderr, "dlsym: %s\n", dlerror()); return 1; }
	CK_FUNCTION_LIST_PTR fl = NULL;
	CK_RV rv = get(&fl);
	if (rv != CKR_OK || !fl || !fl->C_Initialize || !fl->C_Sign) { fprintf(stderr, "C_GetFunctionList: rv 0x%lx\n", (unsigned long)rv); return 1; }
	printf("cryptoki %d.%d\n", fl->version.major, fl->version.minor);
	return argc == 2 && fl->version.major == 2 ? 0 : 1;
}
`

// checkCrossModuleLoads runs crossModuleLoader, cross-compiled for a, under
// qemu against the libedgev2-pkcs11.so of the package (EDGEV2_CROSS_DEBS)
// or built here with the Makefile (make pkcs11mod ARCH=...).
func checkCrossModuleLoads(t *testing.T, a crossArch) {
	if _, err := exec.LookPath(a.cc); err != nil {
		testenv.Missing(t, "the "+a.deb+" cross compiler", a.cc+" not on PATH (gcc-"+a.triplet+")")
	}
	dir := testenv.SharedTempDir(t, "cross-p11-"+a.deb)
	mod := filepath.Join(dir, "libedgev2-pkcs11.so")
	if debs := os.Getenv("EDGEV2_CROSS_DEBS"); debs != "" {
		if !filepath.IsAbs(debs) {
			debs = filepath.Join(testenv.RepoRoot(), debs)
		}
		matches, _ := filepath.Glob(filepath.Join(debs, "edgev2_*_"+a.deb+".deb"))
		if len(matches) != 1 {
			t.Fatalf("want one edgev2_*_%s.deb in %s, found %v", a.deb, debs, matches)
		}
		extractFromDeb(t, matches[0], "./usr/lib/"+a.triplet+"/pkcs11/libedgev2-pkcs11.so", mod)
	} else {
		cmd := exec.Command("make", "--no-print-directory", "pkcs11mod", "ARCH="+a.deb, "BINDIR="+dir)
		cmd.Dir = testenv.RepoRoot()
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make pkcs11mod ARCH=%s: %v\n%s", a.deb, err, b)
		}
	}
	f, err := elf.Open(mod)
	if err != nil {
		t.Fatal(err)
	}
	if f.Machine != a.machine || f.Class != a.class {
		t.Fatalf("libedgev2-pkcs11.so for %s is %v %v, want %v %v", a.deb, f.Machine, f.Class, a.machine, a.class)
	}
	f.Close()
	src := filepath.Join(dir, "loader.c")
	if err := os.WriteFile(src, []byte(crossModuleLoader), 0o644); err != nil {
		t.Fatal(err)
	}
	loader := filepath.Join(dir, "loader")
	if b, err := exec.Command(a.cc, "-I/usr/include/p11-kit-1", "-o", loader, src, "-ldl").CombinedOutput(); err != nil {
		t.Fatalf("%s loader.c: %v\n%s", a.cc, err, b)
	}
	out, err := exec.Command(mustLookPath(t, a.qemu), loader, mod).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "cryptoki 2.") {
		t.Fatalf("the %s libedgev2-pkcs11.so under %s: %v\n%s", a.deb, a.qemu, err, out)
	}
}
