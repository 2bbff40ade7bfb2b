//go:build systemtest

// The booted-system test (`make test-system`): the packages on a Debian 12
// booted with systemd-nspawn, with systemd as PID 1 and the real system bus
// -- once with dbus-daemon and once with dbus-broker.

package packaging

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgev2/edgev2/internal/testenv"
)

// The root is debootstrapped once with these packages and cached; a change
// of the list rebuilds it.
const (
	systestCache = "/var/cache/edgev2-systest"
	systestSuite = "bookworm"
	systestImage = "example.com/edgev2/systest:1"
)

var systestPackages = []string{
	"systemd", "systemd-sysv", "dbus", "dbus-broker", "polkitd", "containerd", "runc",
	"containernetworking-plugins", "iptables", "softhsm2", "libnss-systemd", "libpam-systemd",
	"iproute2", "procps", "ca-certificates", "p11-kit",
}

// TestSystemBootedDebian installs the packages on a booted Debian and walks
// a gateway's life: NotConfigured before apply, provisioning through DPS,
// enable --now, activation, a principal's grant, a module, an upgrade,
// a reboot, a shutdown with a module that ignores SIGTERM, and a purge and
// reinstall under a running module. Every step is asserted; when one
// fails, the journal of the edgev2 units and the failed units is printed.
func TestSystemBootedDebian(t *testing.T) {
	requireTools(t)
	for tool, pkg := range map[string]string{"debootstrap": "debootstrap", "systemd-nspawn": "systemd-container", "nsenter": "util-linux", "dpkg-deb": "dpkg"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, tool, "the booted-system test needs it (package "+pkg+")")
		}
	}
	start := time.Now()
	root := cachedRoot(t)
	out := t.TempDir()
	var debs map[string]string
	if dir := os.Getenv("EDGEV2_SYSTEST_DEBS"); dir != "" {
		// Iterating on the test itself: packages built before by build-deb.sh.
		debs = map[string]string{}
		for _, p := range []string{pkgName, labcloudName} {
			m, _ := filepath.Glob(filepath.Join(dir, p+"_*.deb"))
			if len(m) != 1 {
				t.Fatalf("EDGEV2_SYSTEST_DEBS=%s: want one %s_*.deb, found %v", dir, p, m)
			}
			debs[p] = m[0]
		}
	} else {
		debs = buildPackages(t, out)
	}
	upgrade := bumpVersion(t, debs[pkgName], out)
	image := testenv.BuildImage(t, systestImage, testenv.ImageConfig{
		// sh as the container's pid 1 ignores SIGTERM: only SIGKILL ends it.
		Cmd: []string{"sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 1; done"},
	})
	t.Logf("root, packages and image ready in %v", time.Since(start).Round(time.Second))
	for _, busImpl := range []string{"dbus-daemon", "dbus-broker"} {
		t.Run(busImpl, func(t *testing.T) {
			begin := time.Now()
			gatewayLife(t, root, busImpl, debs, upgrade, image)
			t.Logf("%s: the gateway's life took %v", busImpl, time.Since(begin).Round(time.Second))
		})
	}
}

// cachedRoot returns the cached debootstrapped root, making it when it is
// missing or was made with another package list.
func cachedRoot(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(systestCache, systestSuite)
	stamp := strings.Join(systestPackages, ",") + "\n"
	if b, err := os.ReadFile(filepath.Join(dir, ".edgev2-systest")); err == nil && string(b) == stamp {
		return dir
	}
	t.Logf("debootstrapping %s into %s (once; cached)", systestSuite, dir)
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(systestCache, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("debootstrap", "--variant=minbase", "--include="+strings.Join(systestPackages, ","),
		systestSuite, tmp, "http://deb.debian.org/debian")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("debootstrap (is deb.debian.org reachable?): %v\n%s", err, tail(b, 40))
	}
	// A persistent journal: the shutdown is checked in the next boot's
	// view of the previous one.
	for _, d := range []string{"var/log/journal", "srv/systest"} {
		if err := os.MkdirAll(filepath.Join(tmp, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(tmp, "etc/hostname"), []byte("systest\n"), 0o644)
	if err := os.WriteFile(filepath.Join(tmp, ".edgev2-systest"), []byte(stamp), 0o644); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// bumpVersion repacks the edgev2 package with a higher version: the upgrade
// the maintainer scripts see.
func bumpVersion(t *testing.T, deb, out string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pkg")
	run(t, "dpkg-deb", "-R", deb, dir)
	ctl := filepath.Join(dir, "DEBIAN", "control")
	b, err := os.ReadFile(ctl)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^Version: (.*)$`)
	m := re.FindSubmatch(b)
	if m == nil {
		t.Fatalf("no Version in %s", ctl)
	}
	b = re.ReplaceAll(b, []byte("Version: ${1}+systest1"))
	if err := os.WriteFile(ctl, b, 0o644); err != nil {
		t.Fatal(err)
	}
	up := filepath.Join(out, "upgrade", filepath.Base(deb))
	os.MkdirAll(filepath.Dir(up), 0o755)
	run(t, "dpkg-deb", "--root-owner-group", "-b", dir, up)
	return up
}

// tickerModule is the module the system test runs, without a network;
// the super-config of the install and of the reinstall both name it.
const tickerModule = `
[[modules]]
name = "ticker"
spec = '''
{"name": "ticker", "type": "docker",
 "config": {"settings": {"image": "` + systestImage + `",
   "createOptions": "{\"HostConfig\":{\"NetworkMode\":\"none\"}}"}}}
'''
`

// machine is a booted container.
type machine struct {
	t      *testing.T
	dir    string
	cmd    *exec.Cmd
	leader int
	exited chan struct{}
	err    error

	console testenv.Buffer
}

// boot starts systemd-nspawn -b on dir and waits until the system is up.
func boot(t *testing.T, dir string) *machine {
	t.Helper()
	m := &machine{t: t, dir: dir, exited: make(chan struct{})}
	m.cmd = exec.Command("systemd-nspawn", "-D", dir, "-b", "--register=no", "--keep-unit",
		"--capability=all", "--system-call-filter=@keyring bpf", "--private-network",
		"--machine=edgev2-systest", "--console=pipe")
	m.cmd.Env = append(os.Environ(), "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1")
	m.cmd.Stdout, m.cmd.Stderr = &m.console, &m.console
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("systemd-nspawn: %v", err)
	}
	go func() { m.err = m.cmd.Wait(); close(m.exited) }()
	t.Cleanup(func() {
		select {
		case <-m.exited:
			return
		default:
		}
		m.cmd.Process.Signal(os.Interrupt) // nspawn: power the container off
		select {
		case <-m.exited:
		case <-time.After(90 * time.Second):
			m.cmd.Process.Kill()
			<-m.exited
		}
	})
	if !testenv.WaitFor(60*time.Second, func() bool {
		select {
		case <-m.exited:
			t.Fatalf("systemd-nspawn exited: %v\n%s", m.err, m.consoleTail())
		default:
		}
		m.leader = findLeader(m.cmd.Process.Pid)
		return m.leader != 0
	}) {
		t.Fatalf("the container's systemd never appeared\n%s", m.consoleTail())
	}
	// systemctl fails until systemd's private socket is up.
	var state string
	testenv.WaitFor(180*time.Second, func() bool {
		state, _ = m.sh("timeout 120 systemctl is-system-running --wait 2>&1")
		return !strings.Contains(state, "Failed to connect")
	})
	if s := strings.TrimSpace(state); s != "running" {
		out, _ := m.sh("systemctl --failed --no-pager; journalctl -b --no-pager -p warning | tail -50")
		t.Fatalf("system state after boot: %q, want running\n%s\n%s", s, out, m.consoleTail())
	}
	return m
}

// findLeader returns the container's PID 1 (systemd), a descendant of nspawn.
func findLeader(pid int) int {
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", p, p))
		for _, f := range strings.Fields(string(b)) {
			c, _ := strconv.Atoi(f)
			if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", c)); strings.TrimSpace(string(comm)) == "systemd" {
				return c
			}
			queue = append(queue, c)
		}
	}
	return 0
}

func (m *machine) consoleTail() string {
	return tail([]byte(m.console.String()), 40)
}

// sh runs script in the container as root.
func (m *machine) sh(script string) (string, error) {
	return m.shIn(script, "")
}

// shIn runs script with stdin: the way a secret reaches the container.
// A secret in argv is in every journal entry its process or a child
// writes (journald's _CMDLINE), and in ps on the host and the container.
func (m *machine) shIn(script, stdin string) (string, error) {
	cmd := exec.Command("nsenter", "-t", strconv.Itoa(m.leader), "-a",
		"env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8",
		"/bin/sh", "-c", script)
	cmd.Stdin = strings.NewReader(stdin)
	b, err := cmd.CombinedOutput()
	return string(b), err
}

// write puts content, which holds secrets, at path in the container
// through stdin.
func (m *machine) write(what, path, content string) {
	m.t.Helper()
	if out, err := m.shIn(fmt.Sprintf("mkdir -p $(dirname %s) && cat > %s", path, path), content); err != nil {
		m.fail("%s: writing %s: %v\n%s", what, path, err, out)
	}
}

// must runs script and fails the test, with the journals, if it fails.
func (m *machine) must(what, script string) string {
	m.t.Helper()
	out, err := m.sh(script)
	if err != nil {
		m.fail("%s: %v\n$ %s\n%s", what, err, script, out)
	}
	return out
}

// eventually runs script until it succeeds, for up to timeout.
func (m *machine) eventually(what, script string, timeout time.Duration) string {
	m.t.Helper()
	var out string
	var err error
	if !testenv.WaitFor(timeout, func() bool { out, err = m.sh(script); return err == nil }) {
		m.fail("%s: not within %v: %v\n$ %s\n%s", what, timeout, err, script, out)
	}
	return out
}

// fail prints the edgev2 units' journals and the failed units, then fails.
func (m *machine) fail(format string, args ...any) {
	m.t.Helper()
	j, _ := m.sh("systemctl --no-pager --failed; systemctl --no-pager status 'edgev2-*' labcloud 2>&1 | tail -60; " +
		"journalctl -b --no-pager -n 150 -u 'edgev2-*' -u labcloud -u containerd")
	m.t.Fatalf(format+"\n--- journal ---\n%s", append(args, j)...)
}

// halt runs `systemctl verb` and waits for the container to end.
func (m *machine) halt(verb string) time.Duration {
	m.t.Helper()
	begin := time.Now()
	m.sh("systemctl --no-block " + verb)
	select {
	case <-m.exited:
	case <-time.After(180 * time.Second):
		m.t.Fatalf("systemctl %s: the container did not end within 180 s\n%s", verb, m.consoleTail())
	}
	return time.Since(begin)
}

var edgeUnits = []string{"edgev2-keyd.service", "edgev2-certd.service", "edgev2-identityd.service", "edgev2-modrtd.service"}

// mainPIDs returns each edgev2 unit's main pid; all must be active.
func (m *machine) mainPIDs() map[string]string {
	m.t.Helper()
	pids := map[string]string{}
	for _, u := range edgeUnits {
		out := m.must("state of "+u, "systemctl show -p ActiveState,MainPID "+u)
		if !strings.Contains(out, "ActiveState=active") {
			m.fail("%s is not active:\n%s", u, out)
		}
		pids[u] = regexp.MustCompile(`MainPID=(\d+)`).FindStringSubmatch(out)[1]
		// The kernel takes it only with CAP_SYS_RESOURCE, which this
		// sandbox's container may lack; the unit must carry it.
		if adj := m.must("OOM score of "+u, "systemctl show -p OOMScoreAdjust "+u); strings.TrimSpace(adj) != "OOMScoreAdjust=-500" {
			m.fail("%s: %s, want OOMScoreAdjust=-500 (the services go after the modules when memory runs out)", u, adj)
		}
	}
	return pids
}

// tickerPid returns the pid of the ticker module's task (ctr, not edgectl:
// containerd's own view).
func (m *machine) tickerPid(timeout time.Duration) string {
	m.t.Helper()
	out := m.eventually("the ticker module runs", "ctr -n edgev2 tasks ls | grep -E '^ticker +[0-9]+ +RUNNING'", timeout)
	return strings.Fields(out)[1]
}

func gatewayLife(t *testing.T, cached, busImpl string, debs map[string]string, upgrade, image string) {
	dir := filepath.Join(t.TempDir(), "root")
	run(t, "cp", "-a", "--reflink=auto", cached, dir)
	// One machine id for all of this gateway's boots (the previous boot's
	// journal is read by machine id).
	id := make([]byte, 16)
	rand.Read(id)
	if err := os.WriteFile(filepath.Join(dir, "etc", "machine-id"), []byte(fmt.Sprintf("%x\n", id)), 0o444); err != nil {
		t.Fatal(err)
	}
	srv := filepath.Join(dir, "srv", "systest")
	os.MkdirAll(srv, 0o755)
	for name, src := range map[string]string{"edgev2.deb": debs[pkgName], "edgev2-labcloud.deb": debs[labcloudName],
		"edgev2-upgrade.deb": upgrade, "image.tar": image} {
		run(t, "cp", src, filepath.Join(srv, name))
	}
	// The system bus: Debian's dbus-broker package makes itself dbus.service.
	if busImpl == "dbus-daemon" {
		run(t, "systemctl", "--root="+dir, "disable", "dbus-broker.service")
	} else {
		run(t, "systemctl", "--root="+dir, "enable", "dbus-broker.service")
	}

	m := boot(t, dir)
	bus := m.must("the bus", "readlink /proc/$(systemctl show -p MainPID --value dbus.service)/exe")
	if want := map[string]string{"dbus-daemon": "/usr/bin/dbus-daemon", "dbus-broker": "/usr/bin/dbus-broker-launch"}[busImpl]; strings.TrimSpace(bus) != want {
		t.Fatalf("the system bus is %q, want %s", bus, want)
	}

	// Install: nothing starts.
	m.must("apt install", "cd /srv/systest && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ./edgev2.deb ./edgev2-labcloud.deb")
	// The PKCS#11 module, registered with p11-kit: listed with its token.
	// Listing it reads only the module's static slot and token: keyd is
	// not activated (checked just below).
	m.must("the PKCS#11 module", "test -f /usr/lib/x86_64-linux-gnu/pkcs11/libedgev2-pkcs11.so && test -f /usr/share/p11-kit/modules/edgev2.module")
	if out := m.must("p11-kit list-modules", "p11-kit list-modules"); !regexp.MustCompile(`(?m)^edgev2: (?:/usr/lib/x86_64-linux-gnu/pkcs11/)?libedgev2-pkcs11\.so\n(?:[ \t]+.*\n)*?[ \t]+token: edgev2[ \t]*$`).MatchString(out) {
		m.fail("p11-kit list-modules does not list the edgev2 module with its token:\n%s", out)
	}
	for _, u := range edgeUnits {
		if out, _ := m.sh("systemctl is-active " + u); strings.TrimSpace(out) != "inactive" {
			m.fail("%s after install: %s, want inactive", u, out)
		}
	}

	// Before config apply: a call is answered at once, NotConfigured.
	out, err := m.sh("busctl --timeout=20 call org.edgev2.Keys1 /org/edgev2/Keys1 org.edgev2.Keys1 ListKeys 2>&1")
	if err == nil || !strings.Contains(out, "not configured") || !strings.Contains(out, "edgectl config apply") {
		m.fail("a call before config apply: %v %q, want the NotConfigured error naming edgectl config apply", err, out)
	}

	// The cloud: labcloud's DPS with the gateway's symmetric-key enrollment
	// and its EST CA with the gateway's Basic password. The cloud side lives
	// under /srv: only the gateway's own /etc and /var/lib are searched for
	// secrets in clear.
	key := make([]byte, 32)
	rand.Read(key)
	k := base64.StdEncoding.EncodeToString(key)
	estPassword, pin := "est-pw-"+randomHex(8), "pin-"+randomHex(6)
	m.write("labcloud's config", "/srv/systest/labcloud.toml", fmt.Sprintf(`[[est.users]]
name = "systest-gw"
password = "%s"

[dps]
id_scope = "0ne00000001"
[[dps.enrollments]]
registration_id = "systest-gw"
attestation = "symmetric_key"
primary_key = "%s"
secondary_key = "%s"
`, estPassword, k, k))
	m.must("labcloud", `mkdir -p /etc/edgev2-systest
# A bare name on 443, as Azure's endpoints are (the container has its own network).
grep -q ' hub.systest.test$' /etc/hosts 2>/dev/null || echo '127.0.0.1 hub.systest.test' >> /etc/hosts
systemd-run --unit=labcloud /usr/bin/edgev2-labcloud --state /srv/labcloud --config /srv/systest/labcloud.toml --listen 127.0.0.1:443 --hub-hostname hub.systest.test`)
	m.eventually("labcloud's CA", "test -s /srv/labcloud/ca.pem && install -m 0644 /srv/labcloud/ca.pem /etc/edgev2-systest/labcloud-ca.pem", 60*time.Second)

	// A SoftHSM token for keyd's base slot, with a PIN only the super-config
	// knows. softhsm2-util reads PINs not given in argv from a terminal
	// only: script(1) makes one and feeds it stdin. (With --pin, runuser's
	// PAM session entry had the PIN in its _CMDLINE in the journal.) The
	// terminal echoes what arrives before softhsm2-util turns echo off:
	// the output is not printed.
	if out, err := m.shIn(`usermod -aG softhsm edgekeys && runuser -u edgekeys -- script -qec "softhsm2-util --init-token --free --label edgev2" /dev/null`,
		"87654321\n87654321\n"+pin+"\n"+pin+"\n"); err != nil || !strings.Contains(out, "The token has been initialized") {
		m.fail("softhsm2-util --init-token, the PINs on its terminal: %v (output not shown: it echoes the PIN; %d bytes)", err, len(out))
	}

	superConfig := func(extra string) string {
		return fmt.Sprintf(`hostname = "systest-gw"

[keys]
pkcs11_lib_path = "/usr/lib/softhsm/libsofthsm2.so"
pkcs11_base_slot = "pkcs11:token=edgev2?pin-value=%s"

[cert_issuance.est]
url = "https://127.0.0.1/.well-known/est"
trusted_certs = ["file:///etc/edgev2-systest/labcloud-ca.pem"]
username = "systest-gw"
password = "%s"

[cert_issuance.certs.est-cert]
method = "est"
common_name = "systest-gw"

[provisioning]
source = "dps"
global_endpoint = "https://hub.systest.test"
id_scope = "0ne00000001"

[provisioning.attestation]
method = "symmetric_key"
registration_id = "systest-gw"
symmetric_key = { value = "%s" }

[cloud]
trusted_certs = ["file:///etc/edgev2-systest/labcloud-ca.pem"]
%s
`, pin, estPassword, k, extra)
	}
	// The first super-config comes on a tmpfs and is applied from there, as
	// an installer would: the secrets are at rest only as sealed credentials.
	m.write("super-config", "/run/edgev2-systest/config.toml", superConfig(""))
	out = m.must("config apply", "edgectl config apply -c /run/edgev2-systest/config.toml")
	// keyd runs (the call above activated it, not configured): restarted;
	// the others did not run and apply must say so.
	if !strings.Contains(out, "restarted edgev2-keyd.service") || !strings.Contains(out, "not running (nothing to restart)") ||
		strings.Contains(out, "restarted edgev2-certd.service") || !strings.Contains(out, "systemctl enable --now") {
		m.fail("config apply says:\n%s\nwant keyd restarted and the others named as not running", out)
	}

	// README's next step.
	m.must("enable --now", "systemctl enable --now edgev2-keyd edgev2-certd edgev2-identityd edgev2-modrtd")
	m.mainPIDs()
	// Assigned to the hub by its bare name (labcloud on 443; the HTTPS
	// certificate covers that name and 127.0.0.1, the EST URL's host).
	m.eventually("provisioning through DPS", "edgectl identity show >/run/identity && grep -q systest-gw /run/identity && grep -qw hub.systest.test /run/identity", 120*time.Second)
	sealedSecrets(t, m, dir, map[string]string{"edgev2.keyd.pin": pin, "edgev2.certd.est-password": estPassword, "edgev2.keyd.device-id": string(key)}, k)

	// Activation of a stopped service by a bus call.
	m.must("stop certd", "systemctl stop edgev2-certd")
	m.must("a call to the stopped certd", "busctl --timeout=60 call org.edgev2.Certificates1 /org/edgev2/Certificates1 org.edgev2.Certificates1 ListCertificates")
	if out, _ := m.sh("systemctl is-active edgev2-certd"); strings.TrimSpace(out) != "active" {
		m.fail("certd after a call activated it: %s", out)
	}

	// A non-root user: denied, then allowed by a [[principal]].
	m.must("user alice", "useradd -m alice")
	if out, err := m.sh("runuser -u alice -- edgectl modules list 2>&1"); err == nil || !strings.Contains(strings.ToLower(out), "not authorized") {
		m.fail("alice listing modules without a grant: %v %q, want not authorized", err, out)
	}
	m.must("image import", "edgectl images import /srv/systest/image.tar")
	m.write("super-config with a principal and a module", "/etc/edgev2/config.toml", superConfig(tickerModule+`
[[principal]]
user = "alice"
modules = ["*"]
`))
	m.must("config apply", "edgectl config apply")
	ticker := m.tickerPid(120 * time.Second)
	m.eventually("alice lists modules with her grant", "runuser -u alice -- edgectl modules list | grep -q ticker", 60*time.Second)

	// Upgrade: the same services run (restarted onto the new binaries), the
	// module keeps running.
	before := m.mainPIDs()
	m.must("upgrade", "cd /srv/systest && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ./edgev2-upgrade.deb")
	if out := m.must("version", "dpkg-query -W -f='${Version}' edgev2"); !strings.HasSuffix(out, "+systest1") {
		m.fail("installed version after the upgrade: %q", out)
	}
	after := m.mainPIDs()
	for _, u := range edgeUnits {
		if before[u] == after[u] {
			m.fail("%s was not restarted by the upgrade (main pid %s before and after)", u, before[u])
		}
	}
	if p := m.tickerPid(10 * time.Second); p != ticker {
		m.fail("the module's task changed over the upgrade: pid %s, then %s", ticker, p)
	}
	m.eventually("the new modrtd adopted the module", "journalctl -b -u edgev2-modrtd | grep -q 'adopted running module.*module=ticker'", 30*time.Second)

	// Reboot: all back, the identity from the cache (the cloud is gone:
	// labcloud was a transient unit).
	m.halt("reboot")
	m = boot(t, dir)
	m.mainPIDs()
	m.tickerPid(120 * time.Second)
	m.eventually("the identity after the reboot", "edgectl identity show | grep -q systest-gw", 60*time.Second)

	// Shutdown: modrtd stops the module (it ignores SIGTERM) within its stop
	// timeout, not systemd-shutdown's 90 s sweep.
	took := m.halt("poweroff")
	t.Logf("%s: poweroff with a module ignoring SIGTERM took %v", busImpl, took.Round(100*time.Millisecond))
	m = boot(t, dir)
	prev := m.must("the previous boot's modrtd journal", "journalctl -b -1 -u edgev2-modrtd --no-pager")
	for _, want := range []string{"the system is shutting down: stopping modules", "module ignored SIGTERM; killing it", "module stopped for shutdown"} {
		if !strings.Contains(prev, want) {
			m.fail("modrtd's journal of the shutdown lacks %q:\n%s", want, tail([]byte(prev), 30))
		}
	}
	if took >= 90*time.Second {
		m.fail("poweroff took %v: the module was left to systemd-shutdown's final sweep", took)
	}

	// Purge under a running module, reinstall: modrtd adopts or replaces
	// the orphan and never crash-loops.
	m.tickerPid(120 * time.Second)
	m.must("purge", "DEBIAN_FRONTEND=noninteractive apt-get purge -y edgev2")
	if out, _ := m.sh("ls -d /etc/edgev2 /var/lib/edgev2 2>&1"); !strings.Contains(out, "No such file") || strings.Count(out, "No such file") != 2 {
		m.fail("after purge: %s", out)
	}
	if out, _ := m.sh("ls /etc/credstore.encrypted/ /etc/systemd/system/edgev2-*.service.d 2>&1"); strings.Contains(out, "edgev2.") || strings.Contains(out, "50-credentials.conf") {
		m.fail("sealed credentials or their drop-ins outlived the purge:\n%s", out)
	}
	orphan := m.tickerPid(5 * time.Second)
	m.must("reinstall", "cd /srv/systest && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ./edgev2-upgrade.deb")
	m.write("super-config again", "/etc/edgev2/config.toml", superConfig(tickerModule))
	m.must("config apply", "edgectl config apply && systemctl enable --now edgev2-keyd edgev2-certd edgev2-identityd edgev2-modrtd")
	if p := m.tickerPid(120 * time.Second); p == orphan {
		m.fail("the orphaned task (pid %s) was adopted with its output gone, not replaced", p)
	}
	m.eventually("modrtd logged the orphan", "journalctl -b -u edgev2-modrtd | grep -q 'cannot be re-attached'", 30*time.Second)
	if out := m.must("modrtd restarts", "systemctl show -p NRestarts,ActiveState edgev2-modrtd"); !strings.Contains(out, "NRestarts=0") || !strings.Contains(out, "ActiveState=active") {
		m.fail("modrtd after the reinstall: %s", out)
	}
	m.must("final purge", "DEBIAN_FRONTEND=noninteractive apt-get purge -y edgev2 edgev2-labcloud")
	m.halt("poweroff")
}

// journalEntriesWith names the journal entries holding secret: which
// fields hold it and who wrote them, the secret itself redacted.
func (m *machine) journalEntriesWith(secret string) string {
	out, err := m.sh("journalctl --no-pager --all -o json")
	if err != nil {
		return fmt.Sprintf("(journalctl -o json: %v)", err)
	}
	redact := func(v string) string { return strings.ReplaceAll(v, secret, "<secret>") }
	var found []string
	for _, line := range strings.Split(out, "\n") {
		if !strings.Contains(line, "{") {
			continue
		}
		var e map[string]any
		if json.Unmarshal([]byte(line), &e) != nil {
			continue
		}
		var fields []string
		for k, v := range e {
			for _, b := range journalValues(v) {
				if bytes.Contains(b, []byte(secret)) {
					fields = append(fields, k)
					break
				}
			}
		}
		if len(fields) == 0 {
			continue
		}
		sort.Strings(fields)
		who := []string{}
		for _, k := range []string{"_SYSTEMD_UNIT", "SYSLOG_IDENTIFIER", "_COMM", "_PID", "MESSAGE", "_CMDLINE"} {
			if v, ok := e[k].(string); ok {
				who = append(who, k+"="+strconv.Quote(redact(v)))
			}
		}
		found = append(found, fmt.Sprintf("journal entry with the secret in %s: %s", strings.Join(fields, ","), strings.Join(who, " ")))
		if len(found) == 5 {
			break
		}
	}
	if len(found) == 0 {
		return "(journalctl shows no entry with it: in a field journalctl cannot show, or in a journal file's unused space)"
	}
	return strings.Join(found, "\n")
}

// journalValues is a field's values in journalctl's JSON: a string, an
// array of bytes (not UTF-8), or an array of either (a repeated field).
func journalValues(v any) [][]byte {
	switch v := v.(type) {
	case string:
		return [][]byte{[]byte(v)}
	case []any:
		var bs []byte
		var out [][]byte
		for _, x := range v {
			switch x := x.(type) {
			case float64:
				bs = append(bs, byte(x))
			default:
				out = append(out, journalValues(x)...)
			}
		}
		if bs != nil {
			out = append(out, bs)
		}
		return out
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return fmt.Sprintf("%x", b)
}

// sealedSecrets proves the gateway's secrets are at rest only sealed: the
// services use them (EST enrollment with the password, the token's PIN,
// DPS with the key -- provisioning already passed), no file under /etc,
// /var/lib or /var/log holds one in clear, edgectl check says where each
// lives, and the sealed files opened with another machine's host key give
// nothing while this machine's opens them.
func sealedSecrets(t *testing.T, m *machine, root string, creds map[string]string, b64Key string) {
	t.Helper()
	m.must("EST enrollment with the sealed password", "busctl --timeout=60 call org.edgev2.Certificates1 /org/edgev2/Certificates1 org.edgev2.Certificates1 EnsureCertificate s est-cert")
	if out := m.must("the EST certificate", "edgectl certs show est-cert"); !strings.Contains(out, "labcloud") {
		m.fail("est-cert is not issued by labcloud's EST CA:\n%s", out)
	}
	if out := m.must("keyd on the token", "edgectl keys list"); !strings.Contains(out, "pkcs11") {
		m.fail("keyd does not use the token (the sealed PIN):\n%s", out)
	}
	// Named by credential, never printed.
	secrets, names := []string{b64Key}, []string{"the DPS key (base64)"}
	for n, v := range creds {
		secrets, names = append(secrets, v), append(names, n)
	}
	for _, top := range []string{"etc", "var/lib", "var/log"} {
		filepath.WalkDir(filepath.Join(root, top), func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return nil
			}
			b, _ := os.ReadFile(p)
			for i, s := range secrets {
				if bytes.Contains(b, []byte(s)) {
					var which string
					if strings.HasPrefix(p, filepath.Join(root, "var/log/journal")) {
						which = "\n" + m.journalEntriesWith(s)
					}
					m.fail("the secret of %s is in clear in %s%s", names[i], strings.TrimPrefix(p, root), which)
				}
			}
			return nil
		})
	}
	out, _ := m.sh("edgectl check 2>&1")
	for _, want := range []string{"secrets.keyd.pin: keyd.toml pkcs11_base_slot: sealed to host", "secrets.certd.est-password: certd.toml [est] password_credential: sealed to host",
		"secrets.keyd.key.device-id: keyd.toml preloaded_keys.device-id: sealed to host"} {
		if !strings.Contains(out, want) {
			m.fail("edgectl check lacks %q:\n%s", want, out)
		}
	}
	// Each credential opens on the gateway (compared by digest: the secret is
	// never printed) and not on "another machine": the same root with another
	// host key, made by systemd-creds setup while the gateway's is moved aside.
	for name, secret := range creds {
		path := "/etc/credstore.encrypted/" + name
		sum := sha256.Sum256([]byte(secret))
		out, err := m.sh("systemd-creds decrypt --name=" + name + " " + path + " - | sha256sum")
		if err != nil || !strings.HasPrefix(strings.TrimSpace(out), hex.EncodeToString(sum[:])) {
			m.fail("%s does not open with the gateway's own host key: %v %s", name, err, strings.TrimSpace(out))
		}
		out, err = m.sh(`set -e
mv /var/lib/systemd/credential.secret /run/own.secret
trap 'mv -f /run/own.secret /var/lib/systemd/credential.secret' EXIT
systemd-creds setup >/dev/null 2>&1
if systemd-creds decrypt --name=` + name + ` ` + path + ` - >/run/other.out 2>/run/other.err; then echo OPENED; fi
if [ -s /run/other.out ]; then echo OUTPUT; fi
cat /run/other.err; rm -f /run/other.out /run/other.err /var/lib/systemd/credential.secret`)
		switch {
		case err != nil:
			m.fail("decrypting %s with another host key could not be tried: %v %s", name, err, out)
		case strings.Contains(out, "OPENED") || strings.Contains(out, "OUTPUT"):
			m.fail("%s opens with another machine's host key", name)
		case strings.Contains(out, secret):
			m.fail("%s reveals the secret with another machine's host key", name)
		}
	}
	t.Logf("%d sealed credentials: none in clear under /etc, /var/lib, /var/log; none opens with another host key", len(creds))
}
