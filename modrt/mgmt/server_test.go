package mgmt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/modrt/ctrd"
	"github.com/edgev2/edgev2/modrt/modspec"
)

const (
	latest = "2022-08-03"
	oldest = "2018-06-28"
)

type testEnv struct {
	t      *testing.T
	srv    *Server
	mods   *fakeModules
	ids    *fakeIdentities
	sock   string
	client *http.Client
}

// asAgent maps the test's own pid to edgeAgent.
func asAgent(ctx context.Context, pid int32) (string, error) {
	if pid == int32(os.Getpid()) {
		return AgentModule, nil
	}
	return "", nil
}

// asOtherModule maps the test's own pid to edgeHub.
func asOtherModule(ctx context.Context, pid int32) (string, error) {
	if pid == int32(os.Getpid()) {
		return "edgeHub", nil
	}
	return "", nil
}

// newEnv serves the API on a real Unix socket in a temp dir. Root is not
// trusted unless trustRoot, so the resolver decides for the test (which
// may run as root).
func newEnv(t *testing.T, resolve PidResolver, trustRoot bool) *testEnv {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "run", "mgmt.sock")
	l, err := ListenUnix(sock, 0o660)
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{t: t, mods: newFakeModules(), ids: newFakeIdentities(), sock: sock}
	info := SystemInfo{OSType: "Linux", Architecture: "x86_64", Version: "0.1.0",
		Provisioning:  Provisioning{Type: "dps", DynamicReprovisioning: true},
		KernelVersion: "6.1.0", OperatingSystem: "Debian GNU/Linux 12 (bookworm)", CPUs: 4,
		Extra: map[string]string{"product_info": "edgev2"}}
	e.srv = NewServer(e.mods, e.ids, info, slog.New(slog.NewTextHandler(io.Discard, nil)))
	e.srv.SetPidResolver(resolve)
	e.srv.trustRoot = trustRoot
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	e.client = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	t.Cleanup(e.client.CloseIdleConnections)
	return e
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) message() string {
	var e errorResponse
	json.Unmarshal(r.body, &e)
	return e.Message
}

func (e *testEnv) do(method, path, body string, hdr ...string) response {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://mgmt"+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

func (e *testEnv) want(r response, status int) response {
	e.t.Helper()
	if r.status != status {
		e.t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if status >= 400 {
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			e.t.Errorf("error Content-Type %q", ct)
		}
		if r.message() == "" {
			e.t.Errorf("error without a message: %s", r.body)
		}
	}
	return r
}

func v(path string) string { return path + "?api-version=" + latest }

func specJSON(name, image string) string {
	return `{"name":"` + name + `","type":"docker","imagePullPolicy":"never","config":{"settings":{"image":"` + image +
		`","createOptions":"{\"Env\":[\"A=1\"]}","auth":{"username":"u","password":"hunter2","serveraddress":"r.example"}},"env":{"K":{"value":"v"}}}}`
}

func mustSpec(t *testing.T, doc string) *modspec.Spec {
	t.Helper()
	s, err := modspec.ParseSpec([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestEveryAPIVersionIsAccepted(t *testing.T) {
	e := newEnv(t, asAgent, false)
	for _, ver := range []string{"2018-06-28", "2019-01-30", "2019-10-22", "2019-11-05", "2020-07-07", "2021-12-07", "2022-08-03"} {
		e.want(e.do("GET", "/modules?api-version="+ver, ""), 200)
		e.want(e.do("GET", "/systeminfo?api-version="+ver, ""), 200)
	}
}

func TestMissingOrUnknownAPIVersionIsBadRequest(t *testing.T) {
	e := newEnv(t, asAgent, false)
	for _, path := range []string{
		"/modules", "/modules?api-version=", "/modules?api-version=2020-01-01", "/modules?api-version=2018-12-30",
		"/nowhere", "/systeminfo?apiversion=2018-06-28", "/modules?api-version=%zz",
	} {
		r := e.want(e.do("GET", path, ""), 400)
		t.Logf("%s: %s", path, r.message())
	}
	if m := e.do("GET", "/modules", "").message(); m != "api-version not specified" {
		t.Errorf("message %q", m)
	}
}

func TestRouteNewerThanAPIVersionIsNotFound(t *testing.T) {
	e := newEnv(t, asAgent, false)
	e.mods.add(ctrd.Status{Name: "m", State: ctrd.StateRunning}, nil)
	e.want(e.do("POST", "/modules/m/prepareupdate?api-version="+oldest, specJSON("m", "alpine")), 404)
	e.want(e.do("GET", "/systeminfo/resources?api-version=2019-10-22", ""), 404)
	e.want(e.do("POST", "/device/reprovision?api-version=2019-01-30", ""), 404)
	e.want(e.do("POST", "/modules/m/prepareupdate?api-version=2019-01-30", specJSON("m", "alpine")), 204)
	e.want(e.do("GET", "/systeminfo/resources?api-version=2019-11-05", ""), 200)
	e.want(e.do("POST", "/device/reprovision?api-version=2019-10-22", ""), 200)
}

func TestUnknownPathsAndMethods(t *testing.T) {
	e := newEnv(t, asAgent, false)
	for _, p := range []string{"/", "/module", "/modules/m/pause", "/modules//start", "/modules/m/logs/x", "/identities/a/b", "/modules//", "/systeminfo/supportbundle/x"} {
		e.want(e.do("GET", v(p), ""), 404)
	}
	for _, c := range [][2]string{{"DELETE", "/modules"}, {"POST", "/modules/m"}, {"GET", "/modules/m/start"},
		{"POST", "/systeminfo"}, {"GET", "/device/reprovision"}, {"GET", "/identities/x"}, {"PATCH", "/identities"}} {
		if r := e.want(e.do(c[0], v(c[1]), ""), 400); r.message() != "method not allowed" {
			t.Errorf("%s %s: %q", c[0], c[1], r.message())
		}
	}
}

func TestListModulesReportsSettingsAndStatus(t *testing.T) {
	e := newEnv(t, asAgent, false)
	started := time.Date(2024, 5, 1, 10, 0, 0, 0, time.FixedZone("CEST", 2*3600))
	finished := started.Add(time.Hour)
	e.mods.add(ctrd.Status{Name: "b", Image: "docker.io/library/busybox:latest", State: ctrd.StateFailed, ExitCode: 3,
		StartedAt: started, FinishedAt: finished}, mustSpec(t, specJSON("b", "busybox")))
	e.mods.add(ctrd.Status{Name: "a", Image: "docker.io/library/alpine:latest", State: ctrd.StateRunning, StartedAt: started}, nil)
	r := e.want(e.do("GET", v("/modules"), ""), 200)
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var got struct {
		Modules []map[string]any `json:"modules"`
	}
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Modules) != 2 || got.Modules[0]["name"] != "a" || got.Modules[1]["name"] != "b" {
		t.Fatalf("modules %s", r.body)
	}
	a, b := got.Modules[0], got.Modules[1]
	if s := a["config"].(map[string]any)["settings"].(map[string]any); s["image"] != "docker.io/library/alpine:latest" {
		t.Errorf("a settings %v", s)
	}
	as := a["status"].(map[string]any)
	if as["startTime"] != "2024-05-01T08:00:00Z" || as["exitStatus"] != nil || as["runtimeStatus"].(map[string]any)["status"] != "running" {
		t.Errorf("a status %v", as)
	}
	bs := b["status"].(map[string]any)
	if es := bs["exitStatus"].(map[string]any); es["statusCode"] != "3" || es["exitTime"] != "2024-05-01T09:00:00Z" {
		t.Errorf("b exit status %v", es)
	}
	if bs["runtimeStatus"].(map[string]any)["status"] != "failed" {
		t.Errorf("b status %v", bs)
	}
	settings := b["config"].(map[string]any)["settings"].(map[string]any)
	if settings["image"] != "busybox" || settings["createOptions"].(map[string]any)["Env"] == nil {
		t.Errorf("b settings %v", settings)
	}
	if bytes.Contains(r.body, []byte("hunter2")) || settings["auth"] != nil {
		t.Errorf("registry credentials in the answer: %s", r.body)
	}
	if env := b["config"].(map[string]any)["env"].([]any); len(env) != 1 || env[0].(map[string]any)["key"] != "K" {
		t.Errorf("b env %v", env)
	}
}

func TestGetModule(t *testing.T) {
	e := newEnv(t, asAgent, false)
	e.mods.add(ctrd.Status{Name: "edgeHub", State: ctrd.StateStopped}, mustSpec(t, specJSON("edgeHub", "mcr.microsoft.com/azureiotedge-hub:1.4")))
	var d moduleDetails
	json.Unmarshal(e.want(e.do("GET", v("/modules/edgeHub"), ""), 200).body, &d)
	if d.Name != "edgeHub" || d.ID != "edgeHub" || d.Type != "docker" || d.Status.RuntimeStatus.Status != "stopped" {
		t.Errorf("details %+v", d)
	}
	e.want(e.do("GET", v("/modules/nothere"), ""), 404)
	e.want(e.do("GET", v("/modules/%24edgeAgent"), ""), 400)
	e.want(e.do("GET", v("/modules/a%2Fb"), ""), 400)
}

func TestCreateModule(t *testing.T) {
	e := newEnv(t, asAgent, false)
	r := e.want(e.do("POST", v("/modules"), specJSON("temp", "alpine")), 201)
	var d moduleDetails
	if err := json.Unmarshal(r.body, &d); err != nil {
		t.Fatal(err)
	}
	// The status is the runtime's, as GET shows it, description included.
	if d.Name != "temp" || d.Status.RuntimeStatus.Status != "stopped" || d.Status.RuntimeStatus.Description != "created" ||
		bytes.Contains(r.body, []byte("hunter2")) {
		t.Errorf("details %s", r.body)
	}
	if c := e.mods.Calls(); c[len(c)-2] != "create temp" {
		t.Errorf("calls %v: create must not start", c)
	}
	if r := e.want(e.do("POST", v("/modules"), specJSON("temp", "alpine")), 409); !strings.Contains(r.message(), "exists") {
		t.Errorf("conflict message %q", r.message())
	}
}

func TestCreateModuleRejectsBadBodies(t *testing.T) {
	e := newEnv(t, asAgent, false)
	for _, c := range []struct {
		name, body string
		status     int
		msg        string
	}{
		{"missing body", "", 400, "missing request body"},
		{"not JSON", "{name:", 400, "module spec"},
		{"wrong type", `{"name":"m","type":"exec","config":{"settings":{"image":"a"}}}`, 400, "type"},
		{"no settings", `{"name":"m","type":"docker","config":{}}`, 400, "settings"},
		{"bad name", `{"name":"$m","type":"docker","config":{"settings":{"image":"a"}}}`, 400, "$"},
		{"unhonoured createOptions", `{"name":"m","type":"docker","config":{"settings":{"image":"a","createOptions":{"Tty":true}}}}`, 400, "Tty"},
		{"huge", `{"name":"m","type":"docker","config":{"settings":{"image":"a"}},"pad":"` + strings.Repeat("x", MaxBodySize) + `"}`, 413, "1 MiB"},
		{"over the spec cap", `{"name":"m","type":"docker","config":{"settings":{"image":"a"}},"pad":"` + strings.Repeat("x", modspec.MaxSpecSize) + `"}`, 413, "256 KiB"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := e.want(e.do("POST", v("/modules"), c.body), c.status)
			if !strings.Contains(r.message(), c.msg) {
				t.Errorf("message %q, want it to mention %q", r.message(), c.msg)
			}
		})
	}
	e.want(e.do("POST", v("/modules"), specJSON("m", "a"), "Content-Type", "text/plain"), 415)
	if c := e.mods.Calls(); len(c) != 0 {
		t.Errorf("runtime called for bad bodies: %v", c)
	}
}

func TestUpdateModuleReplacesIt(t *testing.T) {
	e := newEnv(t, asAgent, false)
	e.mods.add(ctrd.Status{Name: "m", Image: "old", State: ctrd.StateRunning}, mustSpec(t, specJSON("m", "old")))
	var d moduleDetails
	json.Unmarshal(e.want(e.do("PUT", v("/modules/m"), specJSON("m", "new")), 200).body, &d)
	if d.Status.RuntimeStatus.Status != "stopped" || d.Status.RuntimeStatus.Description != "created" {
		t.Errorf("status %+v", d.Status.RuntimeStatus)
	}
	json.Unmarshal(e.want(e.do("PUT", v("/modules/m")+"&start=true", specJSON("m", "newer")), 200).body, &d)
	if d.Status.RuntimeStatus.Status != "running" || d.Status.RuntimeStatus.Description != "running" {
		t.Errorf("status %+v", d.Status.RuntimeStatus)
	}
	want := []string{"get m", "remove m", "create m", "get m", "get m", "remove m", "create m start", "get m"}
	if c := e.mods.Calls(); strings.Join(c, ",") != strings.Join(want, ",") {
		t.Errorf("calls %v, want %v", c, want)
	}
	if _, spec, _ := e.mods.Get(context.Background(), "m"); spec.Config.Settings.Image != "newer" {
		t.Errorf("image %q", spec.Config.Settings.Image)
	}
	e.want(e.do("PUT", v("/modules/m")+"&start", specJSON("m", "x")), 200)
	e.want(e.do("PUT", v("/modules/m")+"&start=maybe", specJSON("m", "x")), 400)
	e.want(e.do("PUT", v("/modules/other"), specJSON("m", "x")), 400)
	e.want(e.do("PUT", v("/modules/nothere"), specJSON("nothere", "x")), 404)
	e.want(e.do("PUT", v("/modules/m"), ""), 400)
}

func TestDeleteStartStopRestartModule(t *testing.T) {
	e := newEnv(t, asAgent, false)
	e.mods.add(ctrd.Status{Name: "m", State: ctrd.StateStopped}, nil)
	for _, a := range []string{"start", "stop", "restart"} {
		r := e.want(e.do("POST", v("/modules/m/"+a), ""), 204)
		if len(r.body) != 0 {
			t.Errorf("%s: body %q", a, r.body)
		}
		e.want(e.do("POST", v("/modules/nothere/"+a), ""), 404)
	}
	e.want(e.do("DELETE", v("/modules/m"), ""), 204)
	e.want(e.do("DELETE", v("/modules/m"), ""), 404)
}

func TestPrepareUpdatePassesTheSpec(t *testing.T) {
	e := newEnv(t, asAgent, false)
	e.want(e.do("POST", v("/modules/m/prepareupdate"), specJSON("m", "registry.example/app:2")), 204)
	if len(e.mods.prepared) != 1 || e.mods.prepared[0].Config.Settings.Image != "registry.example/app:2" ||
		e.mods.prepared[0].Config.Settings.Auth == nil {
		t.Errorf("prepared %+v", e.mods.prepared)
	}
	e.want(e.do("POST", v("/modules/m/prepareupdate"), ""), 400)
	e.want(e.do("POST", v("/modules/n/prepareupdate"), specJSON("m", "a")), 400)
}

func TestRuntimeFailuresKeepTheirDetailInTheLog(t *testing.T) {
	e := newEnv(t, asAgent, false)
	e.mods.failWith = errors.New("containerd: secret detail")
	r := e.want(e.do("GET", v("/modules"), ""), 500)
	if strings.Contains(r.message(), "secret") {
		t.Errorf("internal detail leaked: %q", r.message())
	}
}

// The agent-only routes refuse a process of another module, and leave the
// read-only ones open.
func TestAgentOnlyRoutesRefuseOtherModules(t *testing.T) {
	for _, c := range []struct {
		name    string
		resolve PidResolver
	}{{"other module", asOtherModule}, {"no module", func(context.Context, int32) (string, error) { return "", nil }}, {"no resolver", nil}} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, c.resolve, false)
			e.mods.add(ctrd.Status{Name: "m", State: ctrd.StateRunning}, nil)
			e.ids.Create(context.Background(), "m", "iotedge")
			for _, rq := range [][3]string{
				{"POST", "/modules", specJSON("n", "a")},
				{"PUT", "/modules/m", specJSON("m", "a")},
				{"DELETE", "/modules/m", ""},
				{"POST", "/modules/m/start", ""},
				{"POST", "/modules/m/stop", ""},
				{"POST", "/modules/m/restart", ""},
				{"POST", "/modules/m/prepareupdate", specJSON("m", "a")},
				{"POST", "/identities", `{"moduleId":"x"}`},
				{"POST", "/identities/", `{"moduleId":"x"}`},
				{"PUT", "/identities/m", ""},
				{"DELETE", "/identities/m", ""},
				{"POST", "/device/reprovision", ""},
			} {
				r := e.want(e.do(rq[0], v(rq[1]), rq[2]), 403)
				if !strings.Contains(r.message(), "edgeAgent") {
					t.Errorf("%s %s: message %q", rq[0], rq[1], r.message())
				}
			}
			if c := e.mods.Calls(); len(c) != 0 {
				t.Errorf("runtime called for refused requests: %v", c)
			}
			for _, p := range []string{"/modules", "/modules/m", "/modules/m/logs", "/identities", "/systeminfo", "/systeminfo/resources"} {
				e.want(e.do("GET", v(p), ""), 200)
			}
		})
	}
}

func TestRootIsTrusted(t *testing.T) {
	testenv.RequireRoot(t) // the test's own uid is the caller's
	e := newEnv(t, nil, true)
	e.want(e.do("POST", v("/modules"), specJSON("m", "a")), 201)
	e.want(e.do("POST", v("/device/reprovision"), ""), 200)
}

// Root on the host is trusted only when the caller is known to be no
// module's: while containerd does not answer for a host-pid-namespace
// module's processes, such a module's root process would pass for a host
// tool. The API refuses (503) instead, and does nothing.
func TestRootIsRefusedWhileTheCallerCannotBeTold(t *testing.T) {
	testenv.RequireRoot(t) // the test's own uid is the caller's
	e := newEnv(t, func(context.Context, int32) (string, error) {
		return "", errors.New("list the processes of module hostpid: containerd: connection refused")
	}, true)
	e.mods.add(ctrd.Status{Name: "m", State: ctrd.StateRunning}, nil)
	for _, rq := range [][2]string{{"POST", "/modules"}, {"POST", "/device/reprovision"}, {"DELETE", "/modules/m"}} {
		r := e.want(e.do(rq[0], v(rq[1]), specJSON("n", "a")), 503)
		if !strings.Contains(r.message(), "cannot tell") {
			t.Errorf("%s %s: message %q", rq[0], rq[1], r.message())
		}
	}
	if c := e.mods.Calls(); len(c) != 0 {
		t.Errorf("runtime called for refused requests: %v", c)
	}
}

func TestIdentities(t *testing.T) {
	e := newEnv(t, asAgent, false)
	var id identityJSON
	json.Unmarshal(e.want(e.do("POST", v("/identities"), `{"moduleId":"edgeHub"}`), 200).body, &id)
	if id.ModuleID != "edgeHub" || id.ManagedBy == nil || *id.ManagedBy != "iotedge" || id.AuthType != "sas" || id.GenerationID == "" {
		t.Errorf("identity %+v", id)
	}
	e.want(e.do("POST", v("/identities/"), `{"moduleId":"temp","managedBy":"me","extra":1}`), 200)
	e.want(e.do("POST", v("/identities"), `{"moduleId":"temp"}`), 409)
	for _, p := range []string{"/identities", "/identities/"} {
		var list struct {
			Identities []identityJSON `json:"identities"`
		}
		json.Unmarshal(e.want(e.do("GET", v(p), ""), 200).body, &list)
		if len(list.Identities) != 2 || list.Identities[0].ModuleID != "edgeHub" || *list.Identities[1].ManagedBy != "me" {
			t.Errorf("%s: %+v", p, list)
		}
	}
	json.Unmarshal(e.want(e.do("PUT", v("/identities/temp"), `{"generationId":"x","managedBy":"other"}`), 200).body, &id)
	if *id.ManagedBy != "other" {
		t.Errorf("updated %+v", id)
	}
	e.want(e.do("PUT", v("/identities/temp"), ""), 200)
	e.want(e.do("PUT", v("/identities/nothere"), ""), 404)
	e.want(e.do("PUT", v("/identities/temp"), `{"managedBy":5}`), 400)
	e.want(e.do("DELETE", v("/identities/temp"), ""), 204)
	e.want(e.do("DELETE", v("/identities/temp"), ""), 404)
	for _, body := range []string{"", "null", `{"managedBy":"x"}`, `{"moduleId":7}`, `{"moduleId":"a"} {}`, `[`} {
		if r := e.want(e.do("POST", v("/identities"), body), 400); r.message() == "" {
			t.Errorf("%q: no message", body)
		}
	}
}

func TestSystemInfo(t *testing.T) {
	e := newEnv(t, asAgent, false)
	var got map[string]any
	json.Unmarshal(e.want(e.do("GET", v("/systeminfo"), ""), 200).body, &got)
	prov, _ := got["provisioning"].(map[string]any)
	if got["osType"] != "Linux" || got["architecture"] != "x86_64" || got["version"] != "0.1.0" ||
		got["kernel_version"] != "6.1.0" || got["operating_system"] != "Debian GNU/Linux 12 (bookworm)" ||
		got["cpus"] != float64(4) || got["product_info"] != "edgev2" ||
		prov["type"] != "dps" || prov["dynamicReprovisioning"] != true || prov["alwaysReprovisionOnStartup"] != false {
		t.Errorf("systeminfo %v", got)
	}
}

func TestSystemResourcesFromTheHost(t *testing.T) {
	e := newEnv(t, asAgent, false)
	var got systemResourcesJSON
	r := e.want(e.do("GET", v("/systeminfo/resources"), ""), 200)
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	if got.TotalRAM == 0 || got.UsedRAM > got.TotalRAM || got.HostUptime == 0 || got.DockerStats != "[]" ||
		got.UsedCPU < 0 || got.UsedCPU > 100 || got.Disks == nil {
		t.Errorf("resources %s", r.body)
	}
	for _, k := range []string{"host_uptime", "process_uptime", "used_cpu", "used_ram", "total_ram", "disks", "docker_stats"} {
		if !bytes.Contains(r.body, []byte(`"`+k+`"`)) {
			t.Errorf("no %s in %s", k, r.body)
		}
	}
	// A second sample measures CPU use since the first.
	e.want(e.do("GET", v("/systeminfo/resources"), ""), 200)
}

func TestReprovision(t *testing.T) {
	e := newEnv(t, asAgent, false)
	r := e.want(e.do("POST", v("/device/reprovision"), ""), 200)
	if len(r.body) != 0 || e.ids.reprovisions != 1 {
		t.Errorf("body %q, reprovisions %d", r.body, e.ids.reprovisions)
	}
}
