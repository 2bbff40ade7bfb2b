package modrt_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/internal/testenv"
	rtapi "github.com/edgev2/edgev2/modrt/api"
)

func specCO(name, image, restart, createOptions string, cmd string) string {
	return fmt.Sprintf(`{"name":%q,"type":"docker","restartPolicy":%q,"config":{"settings":{"image":%q,"createOptions":{"Cmd":[%q],"HostConfig":%s}}}}`,
		name, restart, image, cmd, createOptions)
}

func (m *modrtd) waitLogContains(t *testing.T, name, want string) string {
	t.Helper()
	var out string
	if !testenv.WaitFor(30*time.Second, func() bool { out = m.ModuleLogs(t, name); return strings.Contains(out, want) }) {
		t.Fatalf("%s never logged %q: %q", name, want, out)
	}
	return out
}

// The deployer gets what the allowlist allows and no more; a module cannot
// widen it by planting links in its own volume between two starts.
func TestModulePolicyHoldsAtCreateAndAtEveryStart(t *testing.T) {
	m := startModrtdIn(t, "edgev2-policy", `[[policy.allow]]`, `modules = ["netadmin"]`, `cap_add = ["NET_ADMIN"]`)
	archive := testenv.BuildImage(t, "edgev2.test/busybox:1", testenv.ImageConfig{Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"echo default"}})
	m.ImportImage(t, archive)
	const image = "edgev2.test/busybox:1"
	vols := filepath.Join(m.home, "volumes")

	t.Run("DeployerCannotAskForHostRoot", func(t *testing.T) {
		for _, tc := range []struct{ name, hc, want string }{
			{"capall", `{"CapAdd":["ALL"]}`, `"ALL"`},
			{"sysadmin", `{"CapAdd":["SYS_ADMIN"]}`, "cap_add"},
			{"privileged", `{"Privileged":true}`, "privileged"},
			{"cron", `{"Binds":["/etc/cron.d:/cron"]}`, "outside what the runtime policy allows"},
			{"hostroot", `{"Binds":["/:/host:ro"]}`, "outside"},
			{"dockersock", `{"Binds":["/var/run/docker.sock:/var/run/docker.sock"]}`, "outside"},
			{"othervolume", `{"Binds":["` + filepath.Join(vols, "netadmin") + `:/x"]}`, "outside"},
			{"netadmin2", `{"CapAdd":["NET_ADMIN"]}`, "cap_add"}, // the opt-in is for "netadmin" only
		} {
			err := m.CreateModule(tc.name, specCO(tc.name, image, "never", tc.hc, "sleep 600"))
			var de godbus.Error
			if !errorsAs(err, &de) || de.Name != bus.ErrInvalidArgs || !strings.Contains(fmt.Sprint(de.Body...), tc.want) {
				t.Errorf("%s: %v; want %s naming %q", tc.name, err, bus.ErrInvalidArgs, tc.want)
			}
		}
		if out := m.ctr.Ctr(t, "-n", "edgev2-policy", "containers", "ls", "-q"); strings.TrimSpace(out) != "" {
			t.Fatalf("refused specs left containers: %q", out)
		}
		// The opt-in works for the module it names.
		if err := m.CreateModule("netadmin", specCO("netadmin", image, "never", `{"CapAdd":["NET_ADMIN"]}`, "grep CapEff /proc/self/status; sleep 600")); err != nil {
			t.Fatalf("NET_ADMIN for the module the policy allows it: %v", err)
		}
		out := m.waitLogContains(t, "netadmin", "CapEff")
		var eff uint64
		fmt.Sscanf(strings.TrimSpace(out[strings.Index(out, "CapEff:")+7:]), "%x", &eff)
		if eff&(1<<12) == 0 || eff&(1<<21) != 0 { // CAP_NET_ADMIN 12, CAP_SYS_ADMIN 21
			t.Fatalf("netadmin's effective capabilities %x: want NET_ADMIN and not SYS_ADMIN", eff)
		}
		m.Module("netadmin").Call(rtapi.ModuleInterface+".Remove", 0)
	})

	t.Run("LinkPlantedInTheVolumeIsNotMountedOnRestart", func(t *testing.T) {
		// First run: the module swaps the directory it binds at /sub for a
		// link to the host's /etc and exits non-zero, to be restarted.
		vol := filepath.Join(vols, "planter")
		hc := fmt.Sprintf(`{"Binds":[%q,%q]}`, vol+":/vol", filepath.Join(vol, "sub")+":/sub")
		cmd := "if [ ! -e /vol/planted ]; then touch /vol/planted; rm -rf /vol/sub && ln -s /etc /vol/sub && echo PLANTED; exit 1; fi; echo SECOND-RUN; ls /sub; sleep 600"
		if err := m.CreateModule("planter", specCO("planter", image, "on-failure", hc, cmd)); err != nil {
			t.Fatal(err)
		}
		m.waitLogContains(t, "planter", "PLANTED")
		if fi, err := os.Lstat(filepath.Join(vol, "sub")); err != nil || fi.Mode().Type() != os.ModeSymlink {
			t.Fatalf("the module did not leave its link: %v %v", fi, err)
		}
		m.waitStatus(t, "planter", "failed")
		if out := m.ModuleLogs(t, "planter"); strings.Contains(out, "SECOND-RUN") || strings.Contains(out, "passwd") {
			t.Fatalf("the restarted module ran with the link mounted: %q", out)
		}
		// Asked again, the start is refused with a named error saying why.
		err := m.Module("planter").Call(rtapi.ModuleInterface+".Start", 0).Err
		var de godbus.Error
		if !errorsAs(err, &de) || de.Name != bus.ErrInvalidArgs || !strings.Contains(fmt.Sprint(de.Body...), "symbolic link") {
			t.Fatalf("Start after the link was planted: %v; want %s about the symbolic link", err, bus.ErrInvalidArgs)
		}
		if !strings.Contains(m.svc.Output(), "module start refused") {
			t.Error("the refusal is not logged")
		}
		m.Module("planter").Call(rtapi.ModuleInterface+".Remove", 0)
	})

	t.Run("AllowedBindKeepsWorkingAcrossRestarts", func(t *testing.T) {
		data := filepath.Join(vols, "keeper", "data")
		hc := fmt.Sprintf(`{"Binds":[%q]}`, data+":/data")
		if err := m.CreateModule("keeper", specCO("keeper", image, "always", hc, "echo run >> /data/runs; echo RUNNING; sleep 600")); err != nil {
			t.Fatal(err)
		}
		runs := func() int {
			b, _ := os.ReadFile(filepath.Join(data, "runs"))
			return strings.Count(string(b), "run\n")
		}
		waitRuns := func(n int) {
			t.Helper()
			if !testenv.WaitFor(30*time.Second, func() bool { return runs() >= n }) {
				t.Fatalf("keeper ran %d times, want %d", runs(), n)
			}
		}
		waitRuns(1)
		if err := m.Module("keeper").Call(rtapi.ModuleInterface+".Restart", 0).Err; err != nil {
			t.Fatal(err)
		}
		waitRuns(2)
		m.svc.Restart(t)
		// Killed behind modrtd's back, supervision restarts it through the check.
		m.ctr.Ctr(t, "-n", "edgev2-policy", "tasks", "kill", "-s", "SIGKILL", "keeper")
		waitRuns(3)
		m.waitStatus(t, "keeper", "running")
		m.Module("keeper").Call(rtapi.ModuleInterface+".Remove", 0)
	})
}

// The agent's management socket directory is bound read-only, and a link
// left where the socket goes is never followed when modrtd listens again.
func TestManagementSocketDirectoryCannotBeTurnedAgainstTheHost(t *testing.T) {
	m := startModrtdIn(t, "edgev2-policy")
	archive := testenv.BuildImage(t, "edgev2.test/busybox:1", testenv.ImageConfig{Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"echo default"}})
	m.ImportImage(t, archive)
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("host secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	// From inside: the agent tries to replace mgmt.sock with a link.
	cmd := "ls /var/run/iotedge-mgmt; if ln -sf /host-victim /var/run/iotedge-mgmt/mgmt.sock 2>/dev/null || rm /var/run/iotedge-mgmt/mgmt.sock 2>/dev/null; then echo REPLACED; else echo REFUSED; fi; sleep 600"
	if err := m.CreateModule("edgeAgent", specCO("edgeAgent", "edgev2.test/busybox:1", "never", `{}`, cmd)); err != nil {
		t.Fatal(err)
	}
	out := m.waitLogContains(t, "edgeAgent", "RE")
	if !strings.Contains(out, "mgmt.sock") || strings.Contains(out, "REPLACED") {
		t.Fatalf("the agent's view of its socket directory: %q; want the socket, read-only", out)
	}
	m.waitLogContains(t, "edgeAgent", "REFUSED")

	// From a container created before the directory was read-only: the
	// link is there when modrtd starts again.
	sock := filepath.Join(m.home, "mgmt", "mgmt.sock")
	m.svc.Kill9(t)
	os.Remove(sock)
	if err := os.Symlink(victim, sock); err != nil {
		t.Fatal(err)
	}
	m.svc.Restart(t)
	fi, err := os.Stat(victim)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("victim is %v (%v); want 0600", fi.Mode(), err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "host secret" {
		t.Fatalf("victim changed: %q", b)
	}
	if fi, err := os.Lstat(sock); err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o660 {
		t.Fatalf("mgmt.sock is %v (%v); want a 0660 socket", fi.Mode(), err)
	}
	out2, err := exec.Command("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", sock, "http://mgmt/systeminfo?api-version=2020-07-07").Output()
	if err != nil || string(out2) != "200" {
		t.Fatalf("the management socket after the restart: %q %v", out2, err)
	}
	m.Module("edgeAgent").Call(rtapi.ModuleInterface+".Remove", 0)
}

// allow_host_network is policy like the rest of it: a module the operator
// no longer lists does not get the host's network back at its next start.
func TestHostNetworkDroppedFromThePolicyIsRefusedAtTheNextStart(t *testing.T) {
	const ns = "edgev2-policy-hostnet"
	allow := "[policy]\nallow_host_network = [\"hostnet\"]"
	m := startModrtdIn(t, ns, allow)
	m.ImportImage(t, testenv.BuildImage(t, "edgev2.test/busybox:1", testenv.ImageConfig{Entrypoint: []string{"/bin/sh", "-c"}}))
	hostNS, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	cmd := "echo NETNS $(readlink /proc/self/ns/net); sleep 600"
	if err := m.CreateModule("hostnet", specCO("hostnet", "edgev2.test/busybox:1", "never", `{"NetworkMode":"host"}`, cmd)); err != nil {
		t.Fatalf("a module the policy allows the host's network: %v", err)
	}
	if got := m.waitLog(t, "hostnet", "NETNS"); got != "NETNS "+hostNS {
		t.Fatalf("the allowed module's network namespace: %q; want the host's %s", got, hostNS)
	}
	if err := m.Module("hostnet").Call(rtapi.ModuleInterface+".Stop", 0, uint32(1)).Err; err != nil {
		t.Fatal(err)
	}

	// The operator takes the module off allow_host_network.
	m.StartDaemon(t, testenv.Modrtd, testenv.Daemon{Namespace: ns})
	m = onDevice(m.Device)
	err = m.Module("hostnet").Call(rtapi.ModuleInterface+".Start", 0).Err
	var de godbus.Error
	if !errorsAs(err, &de) || de.Name != bus.ErrInvalidArgs || !strings.Contains(fmt.Sprint(de.Body...), "allow_host_network") {
		if err == nil {
			testenv.WaitFor(10*time.Second, func() bool { return strings.Count(m.ModuleLogs(t, "hostnet"), "NETNS "+hostNS) >= 2 })
		}
		t.Fatalf("Start once the policy no longer allows the host's network: %v; want %s naming allow_host_network (logs: %q)", err, bus.ErrInvalidArgs, m.ModuleLogs(t, "hostnet"))
	}
	m.waitStatus(t, "hostnet", "failed")
	m.Module("hostnet").Call(rtapi.ModuleInterface+".Remove", 0)
}

// A read-only bind is read-only all the way down: a file system mounted
// below a root of read_only_binds (a USB stick, a data partition) is not
// writable through it.
func TestReadOnlyBindKeepsMountsBelowItReadOnly(t *testing.T) {
	testenv.RequireRoot(t)
	root := filepath.Join(t.TempDir(), "shared")
	sub := filepath.Join(root, "sub")
	testenv.MountTmpfs(t, sub)

	m := startModrtdIn(t, "edgev2-policy-rro", fmt.Sprintf("[policy]\nread_only_binds = [%q]", root))
	m.ImportImage(t, testenv.BuildImage(t, "edgev2.test/busybox:1", testenv.ImageConfig{Entrypoint: []string{"/bin/sh", "-c"}}))
	cmd := "ls /ro/sub >/dev/null && echo SUB-VISIBLE; for f in /ro/top /ro/sub/planted; do if touch $f 2>/dev/null; then echo WRITTEN $f; else echo REFUSED $f; fi; done; echo DONE; sleep 600"
	if err := m.CreateModule("reader", specCO("reader", "edgev2.test/busybox:1", "never", fmt.Sprintf(`{"Binds":[%q]}`, root+":/ro:ro"), cmd)); err != nil {
		t.Fatalf("a read-only bind of a read_only_binds root: %v", err)
	}
	out := m.waitLogContains(t, "reader", "DONE")
	if _, err := os.Stat(filepath.Join(sub, "planted")); err == nil || strings.Contains(out, "WRITTEN") {
		t.Fatalf("the module wrote through its read-only bind: %q", out)
	}
	if !strings.Contains(out, "SUB-VISIBLE") || !strings.Contains(out, "REFUSED /ro/sub/planted") {
		t.Fatalf("the module's view of the read-only bind: %q; want the mount below it, read-only", out)
	}
	m.Module("reader").Call(rtapi.ModuleInterface+".Remove", 0)
}

// Nor does a read-only bind take the host's later mounts in writable: a
// stick the host mounts below a read_only_binds root after the module
// started must not reach it read-write through slave propagation.
func TestReadOnlyBindTakesNoWritableMountsFromTheHost(t *testing.T) {
	testenv.RequireRoot(t)
	root := filepath.Join(t.TempDir(), "media")
	sub := filepath.Join(root, "stick")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	// root is a shared mount, as /media is under systemd.
	for _, args := range [][]string{{"--bind", root, root}, {"--make-shared", root}} {
		if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
			t.Fatalf("mount %v: %v: %s", args, err, out)
		}
	}
	t.Cleanup(func() { exec.Command("umount", "-R", "-l", root).Run() })

	m := startModrtdIn(t, "edgev2-policy-rslave", fmt.Sprintf("[policy]\nread_only_binds = [%q]", root))
	m.ImportImage(t, testenv.BuildImage(t, "edgev2.test/busybox:1", testenv.ImageConfig{Entrypoint: []string{"/bin/sh", "-c"}}))
	cmd := "echo READY; until grep -q ' /ro/stick ' /proc/self/mountinfo; do sleep 0.1; done; if touch /ro/stick/planted 2>/dev/null; then echo WRITTEN; else echo REFUSED; fi; sleep 600"
	err := m.CreateModule("reader", specCO("reader", "edgev2.test/busybox:1", "never", fmt.Sprintf(`{"Binds":[%q]}`, root+":/ro:ro,rslave"), cmd))
	if err != nil {
		var de godbus.Error
		if !errorsAs(err, &de) || de.Name != bus.ErrInvalidArgs || !strings.Contains(fmt.Sprint(de.Body...), "propagation") {
			t.Fatalf("a read-only bind with slave propagation: %v; want it run read-only all the way, or %s naming the propagation", err, bus.ErrInvalidArgs)
		}
		return
	}
	m.waitLogContains(t, "reader", "READY")
	testenv.MountTmpfs(t, sub) // the host mounts a stick
	out := m.waitLog(t, "reader", "WRITTEN", "REFUSED")
	if _, err := os.Stat(filepath.Join(sub, "planted")); err == nil || out != "REFUSED" {
		t.Fatalf("the module wrote to a file system the host mounted below its read-only bind: %q", out)
	}
	m.Module("reader").Call(rtapi.ModuleInterface+".Remove", 0)
}

// The kernel's keyrings are not namespaced: root in a module is root's
// uid on the host, with root's user keyring (where host services keep
// passwords and disk keys). Docker's default seccomp profile keeps
// modules out of it; so must the runtime's.
func TestModuleCannotReadTheHostsKeyring(t *testing.T) {
	testenv.RequireRoot(t)
	bin := filepath.Join(t.TempDir(), "keyring")
	build := exec.Command("go", "build", "-o", bin, "./modrt/testdata/keyring")
	build.Dir = testenv.RepoRoot()
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the keyring program: %v\n%s", err, out)
	}
	desc := fmt.Sprintf("edgev2-test-%d", os.Getpid())
	id, err := unix.AddKey("user", desc, []byte("host secret"), unix.KEY_SPEC_USER_KEYRING)
	if err != nil {
		t.Fatalf("add a key to root's user keyring: %v", err)
	}
	t.Cleanup(func() { unix.KeyctlInt(unix.KEYCTL_INVALIDATE, id, 0, 0, 0) })

	m := startModrtdIn(t, "edgev2-policy-keyring")
	m.ImportImage(t, testenv.BuildImage(t, "edgev2.test/keyring:1", testenv.ImageConfig{
		Entrypoint: []string{"/bin/sh", "-c"}, Files: map[string]string{"/bin/keyring": bin}}))
	if err := m.CreateModule("keys", specCO("keys", "edgev2.test/keyring:1", "never", `{}`, "/bin/keyring "+desc+"; sleep 600")); err != nil {
		t.Fatal(err)
	}
	if got := m.waitLog(t, "keys", "KEY ", "KEYRING-REFUSED"); strings.HasPrefix(got, "KEY ") {
		t.Fatalf("a module read a key from host root's keyring: %q", got)
	}
	m.Module("keys").Call(rtapi.ModuleInterface+".Remove", 0)
}

// containerd acts on some labels of its own: with containerd.io/restart.*
// its restart monitor starts the container's task itself (past the start
// check) with the output going to a host file or a host program the label
// names (binary://), run as root. A deployment must not set them.
func TestDeploymentCannotSetTheLabelsContainerdActsOn(t *testing.T) {
	testenv.RequireRoot(t)
	m := startModrtdIn(t, "edgev2-policy-labels")
	m.ImportImage(t, testenv.BuildImage(t, "edgev2.test/busybox:1", testenv.ImageConfig{Entrypoint: []string{"/bin/sh", "-c"}}))
	pwned := filepath.Join(t.TempDir(), "pwned")
	for i, labels := range []string{
		fmt.Sprintf(`{"containerd.io/restart.status":"running","containerd.io/restart.loguri":"binary:///bin/sh?-c=id+>+%s"}`, pwned),
		fmt.Sprintf(`{"containerd.io/restart.status":"running","containerd.io/restart.logpath":%q}`, pwned),
		`{"io.containerd.image.name":"x"}`,
	} {
		name := fmt.Sprintf("labels%d", i)
		co := fmt.Sprintf(`{"Labels":%s,"Cmd":["echo from the module; exit 0"]}`, labels)
		s := fmt.Sprintf(`{"name":%q,"type":"docker","restartPolicy":"never","config":{"settings":{"image":"edgev2.test/busybox:1","createOptions":%s}}}`, name, co)
		err := m.CreateModule(name, s)
		var de godbus.Error
		if errorsAs(err, &de) && de.Name == bus.ErrInvalidArgs && strings.Contains(fmt.Sprint(de.Body...), "belong to") {
			continue
		}
		if err == nil && i < 2 {
			// What containerd does with them: within its monitor's
			// interval (10 s), a task the runtime never checked, and root
			// on the host.
			testenv.WaitFor(30*time.Second, func() bool { _, err := os.Stat(pwned); return err == nil })
			b, _ := os.ReadFile(pwned)
			t.Errorf("labels %s: created; containerd then wrote the host file: %q", labels, b)
			m.Module(name).Call(rtapi.ModuleInterface+".Remove", 0)
			os.Remove(pwned)
			continue
		}
		t.Errorf("labels %s: %v; want %s saying they belong to containerd", labels, err, bus.ErrInvalidArgs)
		m.Module(name).Call(rtapi.ModuleInterface+".Remove", 0)
	}
}
