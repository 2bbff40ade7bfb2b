package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/edgev2/edgev2/internal/tpm/ptool"
)

// tpm2PKCS11LibPaths are where distributions install tpm2-pkcs11.
var tpm2PKCS11LibPaths = []string{
	"/usr/lib/x86_64-linux-gnu/libtpm2_pkcs11.so.1",
	"/usr/lib/aarch64-linux-gnu/libtpm2_pkcs11.so.1",
	"/usr/lib/arm-linux-gnueabihf/libtpm2_pkcs11.so.1",
	"/usr/lib/libtpm2_pkcs11.so.1",
	"/usr/lib64/pkcs11/libtpm2_pkcs11.so",
}

// TPM2PKCS11LibPath returns the installed tpm2-pkcs11 module, or "".
func TPM2PKCS11LibPath() string { return firstExisting(tpm2PKCS11LibPaths) }

// TPMBroker is tpm2-abrmd, the TPM2 access broker and resource manager,
// in front of a Swtpm, on a private D-Bus of its own.
//
// A TPM holds only a few transient objects and sessions (swtpm: 3); the
// kernel's /dev/tpmrm0 or tpm2-abrmd swap them in and out so that many
// programs (tpm2_ptool, tpm2-tools, keyd's tpm2-pkcs11) can share it.
// swtpm's raw socket has no resource manager, so tpm2-pkcs11 needs the
// broker there. While the broker runs it holds swtpm's only connection:
// Swtpm.Dial blocks until Stop.
type TPMBroker struct {
	TCTI       string // tpm2-tss TCTI string naming the broker
	BusAddress string // the broker's private bus (DBUS_SESSION_BUS_ADDRESS)

	bus, abrmd *process
}

// StartTPMBroker runs a private bus and tpm2-abrmd serving sw. Cleanup
// stops both. A missing tpm2-abrmd or tabrmd TCTI is Missing.
func StartTPMBroker(t TB, sw *Swtpm) *TPMBroker {
	t.Helper()
	abrmd, err := exec.LookPath("tpm2-abrmd")
	if err != nil {
		if _, err2 := os.Stat("/usr/sbin/tpm2-abrmd"); err2 != nil {
			Missing(t, "tpm2-abrmd", "tpm2-abrmd is not installed (Debian packages tpm2-abrmd, libtss2-tcti-tabrmd0)")
			return nil
		}
		abrmd = "/usr/sbin/tpm2-abrmd"
	}
	if !tctiInstalled("tabrmd") {
		Missing(t, "libtss2-tcti-tabrmd0", "the tabrmd TCTI is not installed (Debian package libtss2-tcti-tabrmd0)")
		return nil
	}
	daemon, err := exec.LookPath("dbus-daemon")
	if err != nil {
		Missing(t, "dbus-daemon", "the broker's private bus needs it (package dbus-daemon)")
		return nil
	}
	dir := SharedTempDir(t, "tpmbroker")
	socket := filepath.Join(dir, "bus")
	conf := filepath.Join(dir, "bus.conf")
	// Any uid may connect (keyd runs as edgekeys); only the broker owns a name.
	text := fmt.Sprintf(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path=%s</listen>
  <policy context="default">
    <allow user="*"/>
    <allow send_destination="*"/>
    <allow receive_type="*"/>
  </policy>
  <policy user="root">
    <allow own="com.intel.tss2.Tabrmd"/>
  </policy>
</busconfig>
`, socket)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatalf("write broker bus config: %v", err)
	}
	b := &TPMBroker{BusAddress: "unix:path=" + socket, TCTI: "tabrmd:bus_type=session"}
	busCmd := exec.Command(daemon, "--nofork", "--nopidfile", "--config-file="+conf)
	busCmd.Env = []string{basePath}
	busOut := &capBuffer{}
	if b.bus, err = startProcess(busCmd, busOut); err != nil {
		t.Fatalf("start broker bus: %v", err)
	}
	t.Cleanup(func() {
		if b.abrmd != nil {
			b.Stop()
			logIfFailed(t, "tpm2-abrmd", b.abrmd.out)
		}
		b.bus.kill()
		logIfFailed(t, "broker dbus-daemon", busOut)
	})
	// The socket's file exists from bind(), before dbus-daemon listens:
	// wait until a connection is taken.
	Eventually(t, 10*time.Second, func() bool {
		c, err := net.Dial("unix", socket)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, "broker dbus-daemon does not listen on its socket: %s", busOut)
	// --allow-root: tests run as root; a device runs it as user tss.
	cmd := exec.Command(abrmd, "--session", "--allow-root", "--flush-all", "--tcti="+sw.TCTI)
	cmd.Env = []string{basePath, "DBUS_SESSION_BUS_ADDRESS=" + b.BusAddress}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if b.abrmd, err = startProcess(cmd, &capBuffer{}); err != nil {
		t.Fatalf("start tpm2-abrmd: %v", err)
	}
	if err := (&Bus{Address: b.BusAddress}).waitForName("com.intel.tss2.Tabrmd", 20*time.Second, b.abrmd.done, 0); err != nil {
		t.Fatalf("tpm2-abrmd did not start: %v; output:\n%s", err, b.abrmd.out)
	}
	return b
}

// Env is what a tpm2-tools, tpm2_ptool or tpm2-pkcs11 process needs to
// reach the TPM through the broker.
func (b *TPMBroker) Env() []string {
	return []string{"DBUS_SESSION_BUS_ADDRESS=" + b.BusAddress, "TPM2TOOLS_TCTI=" + b.TCTI, "TPM2_PKCS11_TCTI=" + b.TCTI}
}

// Stop ends tpm2-abrmd, which hands swtpm's connection back (Swtpm.Dial
// works again). Stopping twice is harmless.
func (b *TPMBroker) Stop() {
	if b.abrmd != nil {
		b.abrmd.stop(syscall.SIGTERM, 5*time.Second)
	}
}

// Tool runs a tpm2-tools command (e.g. "tpm2_getcap", "handles-persistent")
// through the broker and returns its standard output; failure is fatal.
func (b *TPMBroker) Tool(t TB, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append([]string{basePath}, b.Env()...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// TPM2PKCS11Token is a tpm2-pkcs11 token: a store directory (sqlite) whose
// primary object lives in a Swtpm, reached through a TPMBroker.
type TPM2PKCS11Token struct {
	LibPath string // libtpm2_pkcs11.so.1
	Store   string // TPM2_PKCS11_STORE directory, owned by the token's user
	TCTI    string // TPM2_PKCS11_TCTI
	Label   string
	PIN     string // user PIN
	SOPIN   string
	Broker  *TPMBroker

	uid, gid int
}

// TPM2PKCS11Options tunes NewTPM2PKCS11Token.
type TPM2PKCS11Options struct {
	// PrimaryHandle is an existing persistent storage key to use as the
	// store's primary object (e.g. "0x81000001", an SRK made beforehand);
	// empty lets tpm2_ptool create one at the first free persistent handle.
	PrimaryHandle string
	// Broker is a running broker for the TPM; nil starts one.
	Broker *TPMBroker
}

// NewTPM2PKCS11Token initialises a tpm2-pkcs11 store on sw (tpm2_ptool
// init, addtoken with random PINs) in a private directory handed to
// uid:gid, so a keyd running as that user can use it. PINs reach
// tpm2_ptool on its standard input, never its argv.
func NewTPM2PKCS11Token(t TB, sw *Swtpm, label string, uid, gid int, opt TPM2PKCS11Options) *TPM2PKCS11Token {
	t.Helper()
	lib := TPM2PKCS11LibPath()
	if lib == "" {
		Missing(t, "tpm2-pkcs11", "libtpm2_pkcs11.so.1 not found in "+strings.Join(tpm2PKCS11LibPaths, ", ")+" (Debian package libtpm2-pkcs11-1)")
		return nil
	}
	if lookPrograms(t, program{"tpm2_ptool", "libtpm2-pkcs11-tools"}) == nil {
		return nil
	}
	b := opt.Broker
	if b == nil {
		b = StartTPMBroker(t, sw)
	}
	dir := SharedTempDir(t, "tpm2pkcs11")
	store := filepath.Join(dir, "store")
	if err := os.Mkdir(store, 0o700); err != nil {
		t.Fatalf("make tpm2-pkcs11 store: %v", err)
	}
	tok := &TPM2PKCS11Token{LibPath: lib, Store: store, TCTI: b.TCTI, Label: label, PIN: randomPIN(t), SOPIN: randomPIN(t), Broker: b, uid: uid, gid: gid}
	initArgs := []string{"init", "--path", store}
	if opt.PrimaryHandle != "" {
		initArgs = append(initArgs, "--primary-handle", opt.PrimaryHandle)
	}
	out := tok.Ptool(t, initArgs...)
	pid := ""
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "id:"); ok {
			pid = strings.TrimSpace(v)
		}
	}
	if pid == "" {
		t.Fatalf("tpm2_ptool init printed no primary id:\n%s", out)
	}
	tok.Ptool(t, "addtoken", "--pid", pid, "--label", label, "--userpin", tok.PIN, "--sopin", tok.SOPIN, "--path", store)
	if err := chownTree(dir, uid, gid); err != nil {
		t.Fatalf("hand %s to %d:%d: %v", dir, uid, gid, err)
	}
	return tok
}

// Ptool runs tpm2_ptool with args (PINs included) passed on standard
// input, as root, against this token's broker; failure is fatal.
func (tok *TPM2PKCS11Token) Ptool(t TB, args ...string) string {
	t.Helper()
	cmd, err := ptool.Command(context.Background(), args...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	cmd.Env = append([]string{basePath, "HOME=" + filepath.Dir(tok.Store)}, tok.Broker.Env()...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tpm2_ptool %s: %v\n%s", args[0], err, out)
	}
	if err := chownTree(filepath.Dir(tok.Store), tok.uid, tok.gid); err != nil {
		t.Fatalf("hand %s to %d:%d: %v", tok.Store, tok.uid, tok.gid, err)
	}
	return string(out)
}

// Env is what keyd (or any tpm2-pkcs11 user) needs in its environment.
func (tok *TPM2PKCS11Token) Env() []string {
	return append([]string{"TPM2_PKCS11_STORE=" + tok.Store}, tok.Broker.Env()...)
}

// URI returns the token's PKCS#11 URI with its user PIN, as
// pkcs11_base_slot takes it.
func (tok *TPM2PKCS11Token) URI() string {
	return "pkcs11:token=" + tok.Label + "?pin-value=" + tok.PIN
}

// tctiInstalled reports whether libtss2-tcti-<name> is on the system.
func tctiInstalled(name string) bool {
	for _, dir := range []string{"/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib/arm-linux-gnueabihf", "/usr/lib", "/usr/lib64"} {
		if m, _ := filepath.Glob(filepath.Join(dir, "libtss2-tcti-"+name+".so*")); len(m) > 0 {
			return true
		}
	}
	return false
}
