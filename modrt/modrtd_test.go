package modrt_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/testenv"
	rtapi "github.com/edgev2/edgev2/modrt/api"
	"github.com/edgev2/edgev2/modrt/logstore"
)

// modrtd is a Device with modrtd (and containerd) on it.
type modrtd struct {
	*testenv.Device
	home string // modrtd's homedir
	bus  *testenv.Bus
	ctr  *testenv.Containerd
	svc  *testenv.Service
	conn *godbus.Conn
}

func startModrtd(t *testing.T, extra ...string) *modrtd {
	t.Helper()
	return startModrtdIn(t, "edgev2-test", extra...)
}

// startModrtdIn runs modrtd on containerd namespace ns (runc's state is per
// namespace: a test that reuses a module name another test left in runc
// needs its own).
func startModrtdIn(t *testing.T, ns string, extra ...string) *modrtd {
	t.Helper()
	return onDevice(testenv.StartDevice(t, testenv.DeviceOptions{Modrtd: &testenv.Daemon{Namespace: ns, Config: strings.Join(extra, "\n")}}))
}

func onDevice(d *testenv.Device) *modrtd {
	return &modrtd{Device: d, home: d.Home(testenv.Modrtd), bus: d.Bus, ctr: d.Ctr, svc: d.Daemon(testenv.Modrtd), conn: d.Conn()}
}

func (m *modrtd) prop(t *testing.T, name, prop string) any {
	t.Helper()
	v, err := m.Module(name).GetProperty(rtapi.ModuleInterface + "." + prop)
	if err != nil {
		t.Fatalf("%s.%s: %v", name, prop, err)
	}
	return v.Value()
}

func (m *modrtd) waitStatus(t *testing.T, name, want string) {
	t.Helper()
	var got any
	if !testenv.WaitFor(30*time.Second, func() bool {
		v, err := m.Module(name).GetProperty(rtapi.ModuleInterface + ".Status")
		if err != nil {
			got = err // not (yet) there
			return false
		}
		got = v.Value()
		return got == want
	}) {
		t.Fatalf("module %s is %v, want %s", name, got, want)
	}
}

// waitLog waits for a line in a module's log that starts with one of
// prefixes and returns it.
func (m *modrtd) waitLog(t *testing.T, name string, prefixes ...string) string {
	t.Helper()
	var line string
	if !testenv.WaitFor(30*time.Second, func() bool {
		sc := bufio.NewScanner(strings.NewReader(m.ModuleLogs(t, name)))
		for sc.Scan() {
			for _, p := range prefixes {
				if strings.HasPrefix(sc.Text(), p) {
					line = sc.Text()
					return true
				}
			}
		}
		return false
	}) {
		t.Fatalf("module %s never printed %v; logs: %q", name, prefixes, m.ModuleLogs(t, name))
	}
	return line
}

// logs reads GetLogs's fd and unframes Docker's 8-byte multiplexing.
func (m *modrtd) logs(t *testing.T, name string) string {
	t.Helper()
	var fd godbus.UnixFD
	if err := m.Module(name).Call(rtapi.ModuleInterface+".GetLogs", 0, map[string]godbus.Variant{"tail": godbus.MakeVariant(int32(-1))}).Store(&fd); err != nil {
		t.Fatalf("GetLogs: %v", err)
	}
	f := os.NewFile(uintptr(fd), "logs")
	defer f.Close()
	text, err := logstore.FramedText(f)
	if err != nil {
		t.Fatalf("the log stream is not in Docker's framing: %v", err)
	}
	return text
}

func spec(name, image, restart string, cmd ...string) string {
	q := make([]string, len(cmd))
	for i, c := range cmd {
		q[i] = fmt.Sprintf("%q", c)
	}
	return fmt.Sprintf(`{"name":%q,"type":"docker","restartPolicy":%q,"config":{"settings":{"image":%q,"createOptions":{"Cmd":[%s]}}}}`,
		name, restart, image, strings.Join(q, ","))
}

func TestModrtdRunsModulesThroughTheBus(t *testing.T) {
	m := startModrtd(t)
	archive := testenv.BuildImage(t, "edgev2.test/busybox:1", testenv.ImageConfig{Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"echo default"}})
	names := m.ImportImage(t, archive)
	if len(names) == 0 || !strings.Contains(strings.Join(names, " "), "edgev2.test/busybox:1") {
		t.Fatalf("ImportImage returned %v", names)
	}
	const image = "edgev2.test/busybox:1"

	t.Run("CreateRunStopStartRemove", func(t *testing.T) {
		if err := m.CreateModule("ticker", spec("ticker", image, "never", "echo hello from ticker; while true; do sleep 1; done")); err != nil {
			t.Fatal(err)
		}
		m.waitStatus(t, "ticker", "running")
		m.waitLog(t, "ticker", "hello from ticker")
		if err := m.Module("ticker").Call(rtapi.ModuleInterface+".Stop", 0, uint32(2)).Err; err != nil {
			t.Fatal(err)
		}
		m.waitStatus(t, "ticker", "stopped")
		if err := m.Module("ticker").Call(rtapi.ModuleInterface+".Start", 0).Err; err != nil {
			t.Fatal(err)
		}
		m.waitStatus(t, "ticker", "running")
		if err := m.Module("ticker").Call(rtapi.ModuleInterface+".Restart", 0).Err; err != nil {
			t.Fatal(err)
		}
		m.waitStatus(t, "ticker", "running")
		var list []string
		m.Runtime().Call(rtapi.Interface+".ListModules", 0).Store(&list)
		if strings.Join(list, ",") != "ticker" {
			t.Fatalf("ListModules = %v", list)
		}
		if err := m.Module("ticker").Call(rtapi.ModuleInterface+".Remove", 0).Err; err != nil {
			t.Fatal(err)
		}
		if out := m.ctr.Ctr(t, "-n", "edgev2-test", "containers", "ls", "-q"); strings.TrimSpace(out) != "" {
			t.Fatalf("containers left after Remove: %q", out)
		}
	})
	t.Run("ModulesFindEachOtherByName", func(t *testing.T) {
		// finder starts first; peer is created later, and finder sees it
		// appear in its /etc/hosts (rewritten in place under the bind).
		if err := m.CreateModule("finder", spec("finder", image, "never",
			"until grep -qw peer-module /etc/hosts; do sleep 0.2; done; grep -w finder /etc/hosts | grep -q 10.213. && echo FOUND-PEER; grep -c localhost /etc/hosts; sleep 600")); err != nil {
			t.Fatal(err)
		}
		m.waitStatus(t, "finder", "running")
		if strings.Contains(m.ModuleLogs(t, "finder"), "FOUND-PEER") {
			t.Fatal("finder found peer-module before it was created")
		}
		if err := m.CreateModule("peer-module", spec("peer-module", image, "never", "sleep 600")); err != nil {
			t.Fatal(err)
		}
		m.waitLog(t, "finder", "FOUND-PEER") // peer-module, and itself on the default network, in /etc/hosts
		for _, n := range []string{"finder", "peer-module"} {
			if err := m.Module(n).Call(rtapi.ModuleInterface+".Remove", 0).Err; err != nil {
				t.Fatal(err)
			}
		}
		hosts, _ := os.ReadFile(filepath.Join(m.home, "hosts", "network-hosts"))
		if strings.Contains(string(hosts), "peer-module") {
			t.Fatalf("removed modules are still in the hosts file:\n%s", hosts)
		}
	})
	t.Run("CrashingModuleIsRestartedWithBackoff", func(t *testing.T) {
		if err := m.CreateModule("crasher", spec("crasher", image, "on-failure", "echo crashing; exit 3")); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 30*time.Second, func() bool {
			n, _ := m.prop(t, "crasher", "RestartCount").(uint32)
			return n >= 2
		}, "RestartCount = %v, want at least 2", m.prop(t, "crasher", "RestartCount"))
		if code, _ := m.prop(t, "crasher", "ExitCode").(int32); code != 3 {
			t.Fatalf("ExitCode = %d, want 3", code)
		}
		m.Module("crasher").Call(rtapi.ModuleInterface+".Remove", 0)
	})
	t.Run("RunningModulesSurviveModrtdAndContainerdRestarts", func(t *testing.T) {
		if err := m.CreateModule("steady", spec("steady", image, "always", "while true; do sleep 1; done")); err != nil {
			t.Fatal(err)
		}
		m.waitStatus(t, "steady", "running")
		pid := func() string {
			return strings.TrimSpace(m.ctr.Ctr(t, "-n", "edgev2-test", "tasks", "ls"))
		}
		before := pid()
		m.svc.Kill9(t)
		m.svc.Restart(t)
		m.waitStatus(t, "steady", "running")
		// Once modrtd is back on containerd's event stream (it says so,
		// after resynchronising every module), the status is containerd's.
		reconnects := strings.Count(m.svc.Output(), "reconnected to containerd")
		m.ctr.Restart(t)
		testenv.Eventually(t, 30*time.Second, func() bool {
			return strings.Count(m.svc.Output(), "reconnected to containerd") > reconnects
		}, "modrtd did not reconnect to the restarted containerd")
		m.waitStatus(t, "steady", "running")
		if after := pid(); after != before {
			t.Fatalf("the module's task changed across restarts:\n%s\n→\n%s", before, after)
		}
		m.Module("steady").Call(rtapi.ModuleInterface+".Remove", 0)
	})
	t.Run("BadSpecsGetNamedErrorsAndLeaveNothing", func(t *testing.T) {
		tests := []struct{ name, module, spec, want string }{
			{"unknown image", "ghost", spec("ghost", "edgev2.test/nope:1", "never", "true"), bus.ErrNotFound},
			{"hostile name", "../etc", spec("../etc", image, "never", "true"), bus.ErrInvalidArgs},
			{"bad JSON", "badjson", `{"config": [}`, bus.ErrInvalidArgs},
			{"forbidden bind", "binder", fmt.Sprintf(`{"name":"binder","type":"docker","config":{"settings":{"image":%q,"createOptions":{"HostConfig":{"Binds":["/var/lib/edgev2:/x"]}}}}}`, image), bus.ErrInvalidArgs},
			{"unsupported option", "devices", fmt.Sprintf(`{"name":"devices","type":"docker","config":{"settings":{"image":%q,"createOptions":{"HostConfig":{"Devices":[{"PathOnHost":"/dev/mem"}]}}}}}`, image), bus.ErrInvalidArgs},
		}
		for _, tt := range tests {
			err := m.CreateModule(tt.module, tt.spec)
			var de godbus.Error
			if !errorsAs(err, &de) || de.Name != tt.want {
				t.Errorf("%s: %v, want %s", tt.name, err, tt.want)
			}
		}
		if out := m.ctr.Ctr(t, "-n", "edgev2-test", "containers", "ls", "-q"); strings.TrimSpace(out) != "" {
			t.Fatalf("bad specs left containers: %q", out)
		}
		if !fault.Is(bus.FromError(m.Module("ghost").Call(rtapi.ModuleInterface+".Start", 0).Err), fault.NotFound) {
			t.Fatal("a module that failed to create has an object")
		}
	})
	t.Run("ManagementRESTAPI", func(t *testing.T) {
		sock := filepath.Join(m.home, "mgmt", "mgmt.sock")
		curl := func(method, path, body string) (int, string) {
			t.Helper()
			args := []string{"-s", "-o", "-", "-w", "\n%{http_code}", "--unix-socket", sock, "-X", method}
			if body != "" {
				args = append(args, "-H", "Content-Type: application/json", "--data-binary", body)
			}
			out, err := exec.Command("curl", append(args, "http://mgmt"+path)...).Output()
			if err != nil {
				t.Fatalf("curl %s %s: %v", method, path, err)
			}
			text := strings.TrimSpace(string(out))
			i := strings.LastIndex(text, "\n")
			var code int
			fmt.Sscan(text[i+1:], &code)
			return code, text[:max(i, 0)]
		}
		const v = "?api-version=2020-07-07"
		if code, _ := curl("GET", "/modules", ""); code != 400 {
			t.Fatalf("no api-version: %d, want 400", code)
		}
		if code, body := curl("POST", "/modules"+v, spec("resty", image, "never", "echo via rest; sleep 30")); code != 201 || !strings.Contains(body, `"resty"`) {
			t.Fatalf("POST /modules: %d %s", code, body)
		}
		if code, _ := curl("POST", "/modules/resty/start"+v, ""); code != 204 {
			t.Fatalf("start: %d", code)
		}
		m.waitStatus(t, "resty", "running")
		if code, body := curl("GET", "/modules"+v, ""); code != 200 || !strings.Contains(body, `"resty"`) || !strings.Contains(body, "running") {
			t.Fatalf("GET /modules: %d %s", code, body)
		}
		if code, body := curl("GET", "/modules/resty"+v, ""); code != 200 || !strings.Contains(body, "edgev2.test/busybox:1") {
			t.Fatalf("GET /modules/resty: %d %s", code, body)
		}
		// An update shows at once in GET, also once the old spec's parse
		// is kept (its file settled: 2 s after it was written).
		time.Sleep(2100 * time.Millisecond)
		if code, body := curl("GET", "/modules"+v, ""); code != 200 || !strings.Contains(body, "echo via rest") {
			t.Fatalf("GET /modules before the update: %d %s", code, body)
		}
		if code, body := curl("PUT", "/modules/resty"+v+"&start=true", spec("resty", image, "never", "echo updated; sleep 30")); code != 200 {
			t.Fatalf("PUT /modules/resty: %d %s", code, body)
		}
		for _, path := range []string{"/modules/resty", "/modules"} {
			if code, body := curl("GET", path+v, ""); code != 200 || !strings.Contains(body, "echo updated") || strings.Contains(body, "echo via rest") {
				t.Fatalf("GET %s after the update: %d %s; want the new spec", path, code, body)
			}
		}
		if code, _ := curl("POST", "/modules"+v, spec("resty", image, "never", "true")); code != 409 {
			t.Fatalf("POST of an existing module: %d, want 409", code)
		}
		if code, _ := curl("GET", "/modules/nope"+v, ""); code != 404 {
			t.Fatalf("GET of a missing module: %d, want 404", code)
		}
		if code, _ := curl("POST", "/modules"+v, `{"name": [}`); code != 400 {
			t.Fatalf("bad JSON: %d, want 400", code)
		}
		if code, _ := curl("DELETE", "/modules/resty"+v, ""); code != 204 {
			t.Fatalf("DELETE: %d", code)
		}
		if code, _ := curl("GET", "/systeminfo"+v, ""); code != 200 {
			t.Fatalf("systeminfo: %d", code)
		}
	})
	t.Run("SecondUIDIsDenied", func(t *testing.T) {
		_, errOut, code := testenv.RunAs(t, testenv.OtherUser, nil, "gdbus", "call", "--address", m.bus.Address, "--dest", rtapi.BusName,
			"--object-path", string(rtapi.ObjectPath), "--method", rtapi.Interface+".ListModules")
		if code == 0 || !strings.Contains(errOut, bus.ErrNotAuthorized) {
			t.Fatalf("ListModules as %s: %d %s", testenv.OtherUser, code, errOut)
		}
	})
	_ = context.Background
}

func errorsAs(err error, target *godbus.Error) bool {
	switch e := err.(type) {
	case godbus.Error:
		*target = e
		return true
	case *godbus.Error:
		*target = *e
		return true
	}
	return false
}

func TestModrtdPullsFromAPrivateRegistryWithCredentials(t *testing.T) {
	testenv.RequireRoot(t)
	reg := testenv.StartRegistry(t, "edge", "s3cret-registry")
	m := startModrtd(t, fmt.Sprintf("registry_ca_files = [%q]", reg.CAFile))
	archive := testenv.BuildImage(t, "edgev2.test/pulled:1", testenv.ImageConfig{Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"echo pulled ok"}})
	testenv.ImportImage(t, m.ctr, "registry-src", archive)
	remote := reg.Push(t, m.ctr, "registry-src", "edgev2.test/pulled:1")

	watch := m.bus.Conn(t)
	watch.AddMatchSignal(godbus.WithMatchSender(rtapi.BusName), godbus.WithMatchMember("PullProgress"))
	sigs := make(chan *godbus.Signal, 64)
	watch.Signal(sigs)
	pull := func(user, pass string) error {
		var digest string
		return m.Runtime().Call(rtapi.Interface+".PullImage", 0, remote, map[string]godbus.Variant{
			"username": godbus.MakeVariant(user), "password": godbus.MakeVariant(pass)}).Store(&digest)
	}
	err := pull("edge", "wrong-password")
	var de godbus.Error
	if !errorsAs(err, &de) || de.Name != bus.ErrNotAuthorized || strings.Contains(fmt.Sprint(de.Body...), "wrong-password") {
		t.Fatalf("pull with a wrong password: %v; want NotAuthorized without the password", err)
	}
	if err := pull("edge", "s3cret-registry"); err != nil {
		t.Fatalf("PullImage: %v", err)
	}
	select {
	case <-sigs:
	case <-time.After(5 * time.Second):
		t.Fatal("no PullProgress signal")
	}
	if err := m.CreateModule("pulled", spec("pulled", remote, "never", "echo pulled ok")); err != nil {
		t.Fatal(err)
	}
	m.waitLog(t, "pulled", "pulled ok")
	if strings.Contains(m.svc.Output(), "s3cret-registry") {
		t.Fatal("modrtd logged the registry password")
	}
}

func TestModrtdKeepsConfiguredModulesRunning(t *testing.T) {
	testenv.RequireRoot(t)
	// The image must exist before modrtd starts: import it into the namespace first.
	d := testenv.StartDevice(t, testenv.DeviceOptions{Containerd: true})
	ctr := d.Ctr
	archive := testenv.BuildImage(t, "edgev2.test/local:1", testenv.ImageConfig{Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"while true; do sleep 1; done"}})
	testenv.ImportImage(t, ctr, "edgev2-test", archive)
	agent := `{"name":"edgeAgent","type":"docker","restartPolicy":"always","config":{"settings":{"image":"edgev2.test/local:1","createOptions":{"Cmd":["echo mgmt=$IOTEDGE_MANAGEMENTURI; ls /var/run/iotedge-mgmt; while true; do sleep 1; done"]}}}}`
	local := `{"name":"local-sensor","type":"docker","restartPolicy":"always","config":{"settings":{"image":"edgev2.test/local:1","createOptions":{}}}}`
	d.StartDaemon(t, testenv.Modrtd, testenv.Daemon{Args: []string{}, Config: fmt.Sprintf("[agent]\nspec = '%s'\n[[modules]]\nname = \"local-sensor\"\nspec = '%s'\n", agent, local)})
	m := onDevice(d)
	for _, name := range []string{"edgeAgent", "local-sensor"} {
		m.waitStatus(t, name, "running")
	}
	// The agent, and only the agent, sees the management socket.
	if got := m.waitLog(t, "edgeAgent", "mgmt="); got != "mgmt=unix:///var/run/iotedge-mgmt/mgmt.sock" {
		t.Fatalf("edgeAgent's IOTEDGE_MANAGEMENTURI: %q", got)
	}
	m.waitLog(t, "edgeAgent", "mgmt.sock") // ls of the mounted directory
	// Removed by hand, it comes back (the local deployment is kept).
	if err := m.Module("local-sensor").Call(rtapi.ModuleInterface+".Remove", 0).Err; err != nil {
		t.Fatal(err)
	}
	m.svc.Restart(t)
	m.waitStatus(t, "local-sensor", "running")
}
