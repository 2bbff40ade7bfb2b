package modrt

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/edgev2/edgev2/fault"
	rtconfig "github.com/edgev2/edgev2/modrt/config"
	"github.com/edgev2/edgev2/modrt/modspec"
	rtpolicy "github.com/edgev2/edgev2/modrt/policy"
)

// apply builds containerd's default spec for a container with rootfs root,
// then applies opts the way containerd.WithNewSpec does.
// edgeAgentSpec is what edgeAgent posts to the management API for edgeHub
// (modspec's test fixture).
var edgeAgentSpec = func() string {
	b, err := os.ReadFile("modspec/testdata/edgeagent_spec.json")
	if err != nil {
		panic(err)
	}
	return string(b)
}()

func apply(t testing.TB, root string, opts []oci.SpecOpts) (*oci.Spec, error) {
	t.Helper()
	ctx := namespaces.WithNamespace(context.Background(), "test")
	c := &containers.Container{ID: "m"}
	s, err := oci.GenerateSpec(ctx, nil, c)
	if err != nil {
		t.Fatal(err)
	}
	s.Root.Path = root
	return s, oci.ApplyOpts(ctx, nil, c, s, opts...)
}

// specWith parses a module spec whose createOptions are co.
func specWith(t testing.TB, co string) *modspec.Spec {
	t.Helper()
	s, err := modspec.ParseSpec([]byte(`{"name":"m","type":"docker","config":{"settings":{"image":"alpine","createOptions":` + co + `}}}`))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ociSpec(t *testing.T, s *modspec.Spec, p rtpolicy.Policy, x rtpolicy.Extra) *oci.Spec {
	t.Helper()
	opts, err := OCIOpts(s, p, x)
	if err != nil {
		t.Fatal(err)
	}
	out, err := apply(t, t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func hasNamespace(s *oci.Spec, ns specs.LinuxNamespaceType) bool {
	for _, n := range s.Linux.Namespaces {
		if n.Type == ns {
			return true
		}
	}
	return false
}

func TestOCIOptsEnvRuntimeWinsThenCreateOptionsThenConfig(t *testing.T) {
	s, err := modspec.ParseSpec([]byte(`{"name":"m","type":"docker","config":{
	  "settings":{"image":"alpine","createOptions":{"Env":["B=fromCreateOptions","C=3","IOTEDGE_MODULEID=forged"]}},
	  "env":[{"key":"A","value":"1"},{"key":"B","value":"fromConfig"},{"key":"IOTEDGE_WORKLOADURI","value":"unix:///elsewhere"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	out := ociSpec(t, s, rtpolicy.Policy{}, rtpolicy.Extra{Env: map[string]string{
		"IOTEDGE_MODULEID":    "m",
		"IOTEDGE_WORKLOADURI": "unix:///var/run/iotedge/workload.sock",
	}})
	env := out.Process.Env
	for _, want := range []string{"A=1", "B=fromCreateOptions", "C=3", "IOTEDGE_MODULEID=m", "IOTEDGE_WORKLOADURI=unix:///var/run/iotedge/workload.sock"} {
		if !slices.Contains(env, want) {
			t.Errorf("env %v lacks %s", env, want)
		}
	}
	for _, e := range env {
		if strings.Contains(e, "forged") || strings.Contains(e, "elsewhere") || strings.Contains(e, "fromConfig") {
			t.Errorf("env keeps overridden %s", e)
		}
	}
}

func TestOCIOptsArgsFollowDockerRules(t *testing.T) {
	imgEntry, imgCmd := []string{"/entry"}, []string{"default-arg"}
	tests := []struct {
		name, co string
		want     []string // nil: the image's command is left alone
	}{
		{"neither", `{}`, nil},
		{"cmd only keeps image entrypoint", `{"Cmd":["a","b"]}`, []string{"/entry", "a", "b"}},
		{"cmd as string", `{"Cmd":"echo hi"}`, []string{"/entry", "echo hi"}},
		{"entrypoint drops image cmd", `{"Entrypoint":["/bin/sh","-c"]}`, []string{"/bin/sh", "-c"}},
		{"entrypoint and cmd", `{"Entrypoint":["/bin/sh","-c"],"Cmd":["date"]}`, []string{"/bin/sh", "-c", "date"}},
		{"empty entrypoint runs image cmd", `{"Entrypoint":[]}`, []string{"default-arg"}},
		{"blank entrypoint string resets", `{"Entrypoint":""}`, []string{"default-arg"}},
		{"empty entrypoint with cmd", `{"Entrypoint":[""],"Cmd":["/bin/true"]}`, []string{"/bin/true"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts, err := OCIOpts(specWith(t, tc.co), rtpolicy.Policy{}, rtpolicy.Extra{ImageEntrypoint: imgEntry, ImageCmd: imgCmd})
			if err != nil {
				t.Fatal(err)
			}
			base := []oci.SpecOpts{oci.WithProcessArgs("image", "args")} // stands in for WithImageConfig
			out, err := apply(t, t.TempDir(), append(base, opts...))
			if err != nil {
				t.Fatal(err)
			}
			want := tc.want
			if want == nil {
				want = []string{"image", "args"}
			}
			if !reflect.DeepEqual(out.Process.Args, want) {
				t.Errorf("args = %q, want %q", out.Process.Args, want)
			}
		})
	}
	_, err := OCIOpts(specWith(t, `{"Entrypoint":[]}`), rtpolicy.Policy{}, rtpolicy.Extra{})
	if !fault.Is(err, fault.InvalidArgs) || !strings.Contains(err.Error(), "no command") {
		t.Errorf("empty command: %v", err)
	}
}

func TestOCIOptsWorkingDirUserHostname(t *testing.T) {
	out := ociSpec(t, specWith(t, `{"WorkingDir":"/app","User":"1000:2000"}`), rtpolicy.Policy{}, rtpolicy.Extra{Hostname: "gw"})
	if out.Process.Cwd != "/app" || out.Process.User.UID != 1000 || out.Process.User.GID != 2000 || out.Hostname != "gw" {
		t.Errorf("cwd %q uid %d gid %d hostname %q", out.Process.Cwd, out.Process.User.UID, out.Process.User.GID, out.Hostname)
	}
	out = ociSpec(t, specWith(t, `{"Hostname":"sensor-1"}`), rtpolicy.Policy{}, rtpolicy.Extra{Hostname: "gw"})
	if out.Hostname != "sensor-1" {
		t.Errorf("createOptions.Hostname lost: %q", out.Hostname)
	}

	// User names are looked up in the image's /etc/passwd.
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "passwd"), []byte("root:x:0:0::/root:/bin/sh\napp:x:1234:4321::/app:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	opts, err := OCIOpts(specWith(t, `{"User":"app"}`), rtpolicy.Policy{}, rtpolicy.Extra{})
	if err != nil {
		t.Fatal(err)
	}
	out, err = apply(t, root, opts)
	if err != nil {
		t.Fatal(err)
	}
	if out.Process.User.UID != 1234 || out.Process.User.GID != 4321 {
		t.Errorf("user app = %d:%d, want 1234:4321", out.Process.User.UID, out.Process.User.GID)
	}
}

func TestOCIOptsMounts(t *testing.T) {
	workload := specs.Mount{Destination: "/var/run/iotedge/workload.sock", Type: "bind", Source: "/run/edgev2/modrtd/m/workload.sock", Options: []string{"rbind", "ro"}}
	s := specWith(t, `{"HostConfig":{
	  "Binds":["/var/run/iotedge/workload.sock:/var/run/iotedge/workload.sock","/srv/data:/data:ro","/srv/shared/:/shared:rw,rshared"],
	  "Mounts":[{"Type":"bind","Source":"/srv/cfg","Target":"/cfg","ReadOnly":true,"BindOptions":{"NonRecursive":true}},
	            {"Type":"tmpfs","Target":"/scratch","TmpfsOptions":{"SizeBytes":1048576,"Mode":448}}]}}`)
	p := rtpolicy.Policy{Static: true, Never: rtconfig.NeverBind, Grants: []rtconfig.Grant{{Modules: []string{"m"}, Binds: []string{"/srv/shared"}, ReadOnlyBinds: []string{"/srv/data", "/srv/cfg"}}}}
	out := ociSpec(t, s, p, rtpolicy.Extra{Mounts: []specs.Mount{workload}})
	byDest := map[string]specs.Mount{}
	for _, m := range out.Mounts {
		if _, dup := byDest[m.Destination]; dup {
			t.Errorf("two mounts on %s", m.Destination)
		}
		byDest[m.Destination] = m
	}
	want := map[string]specs.Mount{
		"/var/run/iotedge/workload.sock": workload, // the runtime's, not edgeAgent's
		"/data":                          {Destination: "/data", Type: "bind", Source: "/srv/data", Options: []string{"rbind", "ro", "rprivate", "rro"}},
		"/shared":                        {Destination: "/shared", Type: "bind", Source: "/srv/shared", Options: []string{"rbind", "rw", "rshared"}},
		"/cfg":                           {Destination: "/cfg", Type: "bind", Source: "/srv/cfg", Options: []string{"bind", "ro", "rprivate"}},
		"/scratch":                       {Destination: "/scratch", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "noexec", "size=1048576", "mode=700"}},
		"/etc/hosts":                     {Destination: "/etc/hosts", Type: "bind", Source: "/etc/hosts", Options: []string{"bind", "ro", "rprivate"}},
		"/etc/resolv.conf":               {Destination: "/etc/resolv.conf", Type: "bind", Source: "/etc/resolv.conf", Options: []string{"bind", "ro", "rprivate"}},
	}
	for dest, w := range want {
		if got, ok := byDest[dest]; !ok || !reflect.DeepEqual(got, w) {
			t.Errorf("mount on %s = %+v, want %+v", dest, got, w)
		}
	}
	if byDest["/proc"].Type != "proc" {
		t.Errorf("containerd's default mounts lost: %+v", out.Mounts)
	}

	// Without a network, the host's name service files are not brought in.
	out = ociSpec(t, specWith(t, `{"HostConfig":{"NetworkMode":"none"}}`), rtpolicy.Policy{}, rtpolicy.Extra{})
	for _, m := range out.Mounts {
		if m.Destination == "/etc/resolv.conf" || m.Destination == "/etc/hosts" {
			t.Errorf("NetworkMode none has %s", m.Destination)
		}
	}
}

func TestOCIOptsBindPolicy(t *testing.T) {
	vol := t.TempDir()
	ro := t.TempDir()
	rw := t.TempDir()
	os.Mkdir(filepath.Join(ro, "sub"), 0o755)
	os.Symlink("/etc", filepath.Join(rw, "etc-link"))
	os.Symlink("/var/lib/edgev2", filepath.Join(t.TempDir(), "x"))
	p := rtpolicy.Policy{VolumesDir: vol, ReadOnlyBinds: []string{ro}, Never: append([]string{"/var/lib/edgev2/modrtd"}, rtconfig.NeverBind...),
		Grants: []rtconfig.Grant{{Modules: []string{"m"}, Binds: []string{rw, "/var/lib", "/etc/edgev2/keyd"}},
			{Modules: []string{"other"}, Binds: []string{"/srv"}}}}
	tests := []struct{ name, bind, want string }{
		{"host root", "/:/host:ro", "outside what the runtime policy allows"},
		{"cron", "/etc/cron.d:/cron", "outside what the runtime policy allows"},
		{"docker socket", "/var/run/docker.sock:/var/run/docker.sock", "outside"},
		{"another module's grant", "/srv/x:/x", "outside"},
		{"read-only root read-write", ro + ":/ro", "may only be bound read-only"},
		{"never, even if granted", "/etc/edgev2/keyd:/k", "may never bind"},
		{"parent of never, even if granted", "/var/lib:/v", "may never bind"},
		{"symlink below a root", filepath.Join(rw, "etc-link") + ":/x", "symbolic link"},
		{"symlink below a root, deeper", filepath.Join(rw, "etc-link", "cron.d") + ":/x", "symbolic link"},
		{"another module's volume", filepath.Join(vol, "other") + ":/x", "outside"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := OCIOpts(specWith(t, `{"HostConfig":{"Binds":["`+tc.bind+`"]}}`), p, rtpolicy.Extra{})
			if !fault.Is(err, fault.InvalidArgs) || !errors.Is(err, rtpolicy.ErrPolicy) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "Binds[0]") {
				t.Errorf("bind %s: %v, want InvalidArgs with %q", tc.bind, err, tc.want)
			}
		})
	}
	_, err := OCIOpts(specWith(t, `{"HostConfig":{"Mounts":[{"Type":"bind","Source":"/etc/edgev2/x","Target":"/x"}]}}`), p, rtpolicy.Extra{})
	if !fault.Is(err, fault.InvalidArgs) || !strings.Contains(err.Error(), "Mounts[0]") {
		t.Errorf("Mounts bind of edgev2's config: %v", err)
	}
	for _, ok := range []string{filepath.Join(vol, "m") + ":/data", filepath.Join(vol, "m", "made", "here") + ":/made", ro + ":/ro:ro", filepath.Join(ro, "sub") + ":/sub:ro", rw + ":/rw"} {
		if _, err := OCIOpts(specWith(t, `{"HostConfig":{"Binds":["`+ok+`"]}}`), p, rtpolicy.Extra{}); err != nil {
			t.Errorf("bind %s refused: %v", ok, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(vol, "m", "made", "here")); err != nil || !fi.IsDir() {
		t.Errorf("missing volume sub-directory not made: %v", err)
	}
	// A link the module left in its own volume is refused, not followed.
	os.Symlink("/etc", filepath.Join(vol, "m", "etc"))
	if _, err := OCIOpts(specWith(t, `{"HostConfig":{"Binds":["`+filepath.Join(vol, "m", "etc")+`:/x"]}}`), p, rtpolicy.Extra{}); !errors.Is(err, rtpolicy.ErrPolicy) || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("link in the volume: %v", err)
	}
}

func TestPolicyGrantsApplyByNameAndImage(t *testing.T) {
	tests := []struct {
		g             rtconfig.Grant
		module, image string
		want          bool
	}{
		{rtconfig.Grant{Modules: []string{"edgeHub"}}, "edgeHub", "any", true},
		{rtconfig.Grant{Modules: []string{"edgeHub"}}, "edgeHub2", "any", false},
		{rtconfig.Grant{Images: []string{"acr.io/hub:*"}}, "x", "acr.io/hub:1.4", true},
		{rtconfig.Grant{Images: []string{"acr.io/hub:*"}}, "x", "acr.io/hubx:1.4", false},
		{rtconfig.Grant{Images: []string{"acr.io/hub:1.4"}}, "x", "acr.io/hub:1.4", true},
		{rtconfig.Grant{Modules: []string{"edgeHub"}, Images: []string{"acr.io/hub:*"}}, "edgeHub", "evil.io/hub:1", false},
		{rtconfig.Grant{Modules: []string{"edgeHub"}, Images: []string{"acr.io/hub:*"}}, "edgeHub", "acr.io/hub:1", true},
		{rtconfig.Grant{}, "edgeHub", "acr.io/hub:1", false},
		// A "*" right after a name would reach other repositories and registries.
		{rtconfig.Grant{Images: []string{"acr.io/hub*"}}, "x", "acr.io/hub-evil:1", false},
		{rtconfig.Grant{Images: []string{"acr.io*"}}, "x", "acr.io.evil.example/hub:1", false},
		{rtconfig.Grant{Images: []string{"acr.io/team/*"}}, "x", "acr.io/team/hub:1", true},
		{rtconfig.Grant{Images: []string{"acr.io/team/*"}}, "x", "acr.io/teamx/hub:1", false},
		{rtconfig.Grant{Images: []string{"alpine:*"}}, "x", "docker.io/library/alpine:3.19", true},
		{rtconfig.Grant{Images: []string{"alpine:*"}}, "x", "docker.io/library/alpine-evil:3.19", false},
	}
	for _, tc := range tests {
		if got := tc.g.Applies(tc.module, tc.image); got != tc.want {
			t.Errorf("%+v on %s %s: %v", tc.g, tc.module, tc.image, got)
		}
	}
}

func TestOCIOptsCapabilityPolicy(t *testing.T) {
	tests := []struct {
		name, co string
		grant    []rtconfig.Grant
		want     string // "" = allowed
	}{
		{"default set", `{"HostConfig":{"CapAdd":["NET_BIND_SERVICE","chown"]}}`, nil, ""},
		{"drop anything", `{"HostConfig":{"CapDrop":["ALL"]}}`, nil, ""},
		{"beyond the default", `{"HostConfig":{"CapAdd":["NET_ADMIN"]}}`, nil, `"NET_ADMIN" is beyond Docker's default`},
		{"sys admin", `{"HostConfig":{"CapAdd":["CAP_SYS_ADMIN"]}}`, nil, "cap_add"},
		{"ALL", `{"HostConfig":{"CapAdd":["ALL"]}}`, nil, `"ALL"`},
		{"ALL with a grant of one", `{"HostConfig":{"CapAdd":["ALL"]}}`, []rtconfig.Grant{{Modules: []string{"m"}, CapAdd: []string{"NET_ADMIN"}}}, `"ALL"`},
		{"granted", `{"HostConfig":{"CapAdd":["net_admin"]}}`, []rtconfig.Grant{{Modules: []string{"m"}, CapAdd: []string{"NET_ADMIN"}}}, ""},
		{"granted to another", `{"HostConfig":{"CapAdd":["NET_ADMIN"]}}`, []rtconfig.Grant{{Modules: []string{"n"}, CapAdd: []string{"NET_ADMIN"}}}, "cap_add"},
		{"privileged", `{"HostConfig":{"Privileged":true}}`, nil, "privileged"},
		{"privileged granted", `{"HostConfig":{"Privileged":true}}`, []rtconfig.Grant{{Modules: []string{"m"}, Privileged: true}}, ""},
		{"host pid", `{"HostConfig":{"PidMode":"host"}}`, nil, "host_pid"},
		{"device", `{"HostConfig":{"Devices":[{"PathOnHost":"/dev/mem"}]}}`, nil, "Devices"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := modspec.ParseSpec([]byte(`{"name":"m","type":"docker","config":{"settings":{"image":"alpine","createOptions":` + tc.co + `}}}`))
			if err == nil {
				_, err = OCIOpts(s, rtpolicy.Policy{Grants: tc.grant}, rtpolicy.Extra{})
			}
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (!fault.Is(err, fault.InvalidArgs) || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("%v, want InvalidArgs with %q", err, tc.want)
			}
		})
	}
}

func TestOCIOptsCapabilities(t *testing.T) {
	all := rtpolicy.Policy{Grants: []rtconfig.Grant{{Modules: []string{"m"}, CapAdd: []string{"ALL"}}}}
	caps := func(co string) []string {
		return ociSpec(t, specWith(t, co), all, rtpolicy.Extra{}).Process.Capabilities.Bounding
	}
	got := caps(`{"HostConfig":{"CapAdd":["net_admin","CAP_SYS_TIME"],"CapDrop":["MKNOD"]}}`)
	if !slices.Contains(got, "CAP_NET_ADMIN") || !slices.Contains(got, "CAP_SYS_TIME") || slices.Contains(got, "CAP_MKNOD") || !slices.Contains(got, "CAP_KILL") {
		t.Errorf("add/drop: %v", got)
	}
	// edgeAgent drops CAP_CHOWN unless the deployment adds it; as in Docker, an add wins.
	got = caps(`{"HostConfig":{"CapAdd":["CHOWN"],"CapDrop":["CAP_CHOWN","CAP_SETUID"]}}`)
	if !slices.Contains(got, "CAP_CHOWN") || slices.Contains(got, "CAP_SETUID") {
		t.Errorf("add wins over drop: %v", got)
	}
	if got = caps(`{"HostConfig":{"CapDrop":["ALL"],"CapAdd":["NET_BIND_SERVICE"]}}`); !reflect.DeepEqual(got, []string{"CAP_NET_BIND_SERVICE"}) {
		t.Errorf("drop ALL: %v", got)
	}
	got = caps(`{"HostConfig":{"CapAdd":["ALL"],"CapDrop":["SYS_ADMIN"]}}`)
	if len(got) != len(modspec.KnownCaps)-1 || slices.Contains(got, "CAP_SYS_ADMIN") {
		t.Errorf("add ALL: %d caps, %v", len(got), got)
	}
}

func TestOCIOptsNamespaces(t *testing.T) {
	// The default network: a network namespace of the task's own (joined to
	// the bridge at start), unless the policy lets the module have the host's.
	for _, co := range []string{`{}`, `{"HostConfig":{"NetworkMode":"azure-iot-edge"}}`} {
		out := ociSpec(t, specWith(t, co), rtpolicy.Policy{}, rtpolicy.Extra{})
		if !hasNamespace(out, specs.NetworkNamespace) || !hasNamespace(out, specs.PIDNamespace) {
			t.Errorf("%s: want own network and pids: %+v", co, out.Linux.Namespaces)
		}
	}
	if _, err := OCIOpts(specWith(t, `{"HostConfig":{"NetworkMode":"azure-iot-edge"}}`), rtpolicy.Policy{}, rtpolicy.Extra{Network: "plant-net"}); !fault.Is(err, fault.InvalidArgs) || !strings.Contains(err.Error(), `"plant-net"`) {
		t.Errorf("a network the device does not have: %v", err)
	}
	host := specWith(t, `{"HostConfig":{"NetworkMode":"host"}}`)
	if _, err := OCIOpts(host, rtpolicy.Policy{}, rtpolicy.Extra{}); !fault.Is(err, fault.InvalidArgs) || !strings.Contains(err.Error(), "allow_host_network") {
		t.Errorf("host network without policy: %v", err)
	}
	out := ociSpec(t, host, rtpolicy.Policy{AllowHostNetwork: true}, rtpolicy.Extra{})
	if hasNamespace(out, specs.NetworkNamespace) {
		t.Errorf("host network allowed: want the host's network: %+v", out.Linux.Namespaces)
	}
	out = ociSpec(t, specWith(t, `{"HostConfig":{"NetworkMode":"none"}}`), rtpolicy.Policy{}, rtpolicy.Extra{})
	if !hasNamespace(out, specs.NetworkNamespace) {
		t.Errorf("none: want a network namespace of its own")
	}
	pid := specWith(t, `{"HostConfig":{"PidMode":"host"}}`)
	if _, err := OCIOpts(pid, rtpolicy.Policy{}, rtpolicy.Extra{}); !fault.Is(err, fault.InvalidArgs) || !strings.Contains(err.Error(), "PidMode") {
		t.Errorf("host pid without policy: %v", err)
	}
	if out = ociSpec(t, pid, rtpolicy.Policy{Grants: []rtconfig.Grant{{Modules: []string{"m"}, HostPID: true}}}, rtpolicy.Extra{}); hasNamespace(out, specs.PIDNamespace) {
		t.Errorf("host pid allowed: still a pid namespace")
	}
}

func TestOCIOptsPrivilegedNeedsPolicy(t *testing.T) {
	s := specWith(t, `{"HostConfig":{"Privileged":true}}`)
	if _, err := OCIOpts(s, rtpolicy.Policy{}, rtpolicy.Extra{}); !fault.Is(err, fault.InvalidArgs) || !strings.Contains(err.Error(), "Privileged") {
		t.Fatalf("privileged without policy: %v", err)
	}
	out := ociSpec(t, s, rtpolicy.Policy{Grants: []rtconfig.Grant{{Images: []string{"alpine"}, Privileged: true}}}, rtpolicy.Extra{})
	if out.Linux.Seccomp != nil || len(out.Linux.MaskedPaths) != 0 {
		t.Errorf("privileged: seccomp %v masked %v", out.Linux.Seccomp, out.Linux.MaskedPaths)
	}
	if r := out.Linux.Resources; r == nil || len(r.Devices) == 0 || !r.Devices[len(r.Devices)-1].Allow {
		t.Errorf("privileged: devices not all allowed")
	}
}

func TestOCIOptsResources(t *testing.T) {
	out := ociSpec(t, specWith(t, `{"HostConfig":{"Memory":268435456,"NanoCpus":500000000,"ReadonlyRootfs":true}}`), rtpolicy.Policy{}, rtpolicy.Extra{})
	r := out.Linux.Resources
	if r.Memory == nil || *r.Memory.Limit != 256<<20 {
		t.Errorf("memory = %+v", r.Memory)
	}
	if r.CPU == nil || *r.CPU.Quota != 50000 || *r.CPU.Period != 100000 {
		t.Errorf("cpu = %+v", r.CPU)
	}
	if !out.Root.Readonly {
		t.Errorf("ReadonlyRootfs ignored")
	}
}

func TestOCIOptsAcceptsWhatEdgeAgentSends(t *testing.T) {
	s, err := modspec.ParseSpec([]byte(edgeAgentSpec))
	if err != nil {
		t.Fatal(err)
	}
	workload := specs.Mount{Destination: "/var/run/iotedge/workload.sock", Type: "bind", Source: "/run/edgev2/modrtd/edgeHub/workload.sock", Options: []string{"rbind"}}
	// The forbidden /run/edgev2 does not apply: edgeAgent's bind is replaced by the runtime's.
	out := ociSpec(t, s, rtpolicy.Policy{Never: rtconfig.NeverBind}, rtpolicy.Extra{Mounts: []specs.Mount{workload}})
	n := 0
	for _, m := range out.Mounts {
		if m.Destination == workload.Destination {
			n++
			if m.Source != workload.Source {
				t.Errorf("workload socket from %s", m.Source)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d mounts on the workload socket", n)
	}
	if !hasNamespace(out, specs.NetworkNamespace) {
		t.Errorf("edgeHub is not on the default network")
	}
	if ports, err := s.PortMappings(); err != nil || !reflect.DeepEqual(ports, []modspec.PortMapping{{HostPort: 5671, ContainerPort: 5671, Protocol: "tcp"}, {HostPort: 8883, ContainerPort: 8883, Protocol: "tcp"}}) {
		t.Errorf("edgeHub's published ports: %v, %v", ports, err)
	}
}

func TestLabelsAndLogLimits(t *testing.T) {
	s := specWith(t, `{"Labels":{"a":"1"},"HostConfig":{"LogConfig":{"Type":"local","Config":{"max-size":"10m","max-file":"5"}}}}`)
	l := s.Labels()
	l["a"] = "changed"
	if s.Labels()["a"] != "1" {
		t.Errorf("Labels returns the spec's own map")
	}
	if specWith(t, `{}`).Labels() != nil {
		t.Errorf("no labels: want nil")
	}
	tests := []struct {
		config string
		bytes  int64
		files  int
	}{
		{`{}`, 0, 0},
		{`{"Type":"json-file","Config":{"max-size":"10m","max-file":"5"}}`, 10 << 20, 5},
		{`{"Config":{"max-size":"1.5g"}}`, 3 << 29, 0},
		{`{"Config":{"max-size":"100KiB"}}`, 100 << 10, 0},
		{`{"Config":{"max-size":"4096"}}`, 4096, 0},
		{`{"Config":{"max-file":"3"}}`, 0, 3},
	}
	for _, tc := range tests {
		b, f, err := specWith(t, `{"HostConfig":{"LogConfig":`+tc.config+`}}`).LogLimits()
		if err != nil || b != tc.bytes || f != tc.files {
			t.Errorf("%s: %d, %d, %v; want %d, %d", tc.config, b, f, err, tc.bytes, tc.files)
		}
	}
	for _, bad := range []string{`{"Config":{"max-size":"ten"}}`, `{"Config":{"max-size":"0"}}`, `{"Config":{"max-file":"0"}}`, `{"Config":{"max-size":"99999999t"}}`} {
		if _, err := modspec.ParseSpec([]byte(`{"name":"m","type":"docker","config":{"settings":{"image":"alpine","createOptions":{"HostConfig":{"LogConfig":` + bad + `}}}}}`)); !fault.Is(err, fault.InvalidArgs) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

func FuzzOCIOpts(f *testing.F) {
	f.Add([]byte(edgeAgentSpec))
	f.Add([]byte(`{"name":"m","type":"docker","config":{"settings":{"image":"alpine","createOptions":{"User":"1:2","WorkingDir":"/w","Entrypoint":"","Cmd":["x"],"HostConfig":{"CapAdd":["ALL"],"CapDrop":["chown"],"NetworkMode":"none","Memory":7000000,"NanoCpus":10000000,"Binds":["/srv:/srv:ro,rslave"],"Mounts":[{"Type":"tmpfs","Target":"/t"}]}}}}}`))
	f.Add([]byte(`{"name":"m","type":"docker","config":{"settings":{"image":"alpine","createOptions":{"HostConfig":{"Binds":["/:/host"],"PidMode":"host","Privileged":true}}}}}`))
	root := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := modspec.ParseSpec(data)
		if err != nil {
			return
		}
		p := rtpolicy.Policy{Static: true, VolumesDir: "/var/lib/edgev2/modrtd/volumes", ReadOnlyBinds: []string{"/srv"}, Never: rtconfig.NeverBind,
			Grants: []rtconfig.Grant{{Modules: []string{"m"}, Binds: []string{"/data"}, CapAdd: []string{"NET_ADMIN"}}}}
		x := rtpolicy.Extra{
			Env:             map[string]string{"IOTEDGE_MODULEID": s.Name},
			Mounts:          []specs.Mount{{Destination: "/var/run/iotedge/workload.sock", Type: "bind", Source: "/run/edgev2/w.sock", Options: []string{"rbind"}}},
			Hostname:        "gw",
			ImageEntrypoint: []string{"/e"},
			ImageCmd:        []string{"c"},
		}
		opts, err := OCIOpts(s, p, x)
		if err != nil {
			if fault.KindOf(err) != fault.InvalidArgs {
				t.Fatalf("error of kind %v: %v", fault.KindOf(err), err)
			}
			return
		}
		out, err := apply(t, root, opts)
		if err != nil {
			return // e.g. a user name missing from the image's /etc/passwd
		}
		for _, c := range out.Process.Capabilities.Bounding {
			if !slices.Contains(rtpolicy.DockerDefaultCaps, c) && !(s.Name == "m" && c == "CAP_NET_ADMIN") {
				t.Fatalf("capability %s outside the policy", c)
			}
		}
		if !slices.Contains(out.Process.Env, "IOTEDGE_MODULEID="+s.Name) {
			t.Fatalf("runtime env overridden: %v", out.Process.Env)
		}
		for _, m := range out.Mounts {
			if m.Type == "bind" && m.Source != "/run/edgev2/w.sock" {
				if (m.Source == "/etc/hosts" || m.Source == "/etc/resolv.conf") && m.Source == m.Destination {
					continue // the runtime's, with host networking
				}
				if !modspec.Within(m.Source, "/var/lib/edgev2/modrtd/volumes/"+s.Name) && !modspec.Within(m.Source, "/srv") && !(s.Name == "m" && modspec.Within(m.Source, "/data")) {
					t.Fatalf("bind outside the policy %+v", m)
				}
				if !modspec.Within(m.Source, "/var/lib/edgev2/modrtd/volumes") {
					for _, n := range p.Never {
						if modspec.Within(m.Source, n) || modspec.Within(n, m.Source) {
							t.Fatalf("bind of what is never bound %+v", m)
						}
					}
				}
			}
		}
	})
}

// TestConfineMakesReadOnlyBindsReadOnlyAllTheWayDown: a container an older
// modrtd made gets "rro" on its read-only recursive binds and private
// propagation; the runtime's own directories, with nothing below them,
// become plain read-only binds instead (no "rro", which needs Linux 5.12,
// so modules keep starting on older kernels).
func TestConfineMakesReadOnlyBindsReadOnlyAllTheWayDown(t *testing.T) {
	rt := "/run/edgev2/modrtd"
	p := rtpolicy.Policy{Static: true, RuntimeDir: rt}
	spec := &oci.Spec{Mounts: []specs.Mount{
		{Destination: "/var/run/iotedge", Type: "bind", Source: rt + "/workload/m", Options: []string{"rbind", "ro"}},
		{Destination: "/etc/hosts", Type: "bind", Source: rt + "/hosts/network-hosts", Options: []string{"rbind", "ro"}},
		{Destination: "/data", Type: "bind", Source: "/srv/data", Options: []string{"rbind", "ro", "rslave"}},
		{Destination: "/cfg", Type: "bind", Source: "/srv/cfg", Options: []string{"bind", "ro"}},
		{Destination: "/rw", Type: "bind", Source: "/srv/rw", Options: []string{"rbind", "rw", "rshared"}},
		// Another module's socket directory is no runtime bind of m's.
		{Destination: "/other", Type: "bind", Source: rt + "/workload/other", Options: []string{"rbind", "ro"}},
	}}
	changed, err := Confine(p)("m", "alpine", spec)
	if err != nil || !changed {
		t.Fatalf("Confine = %v, %v; want the spec changed", changed, err)
	}
	want := [][]string{
		{"bind", "ro"},
		{"bind", "ro"},
		{"rbind", "ro", "rprivate", "rro"},
		{"bind", "ro"},
		{"rbind", "rw", "rshared"},
		{"rbind", "ro", "rro"},
	}
	for i, m := range spec.Mounts {
		if !slices.Equal(m.Options, want[i]) {
			t.Errorf("%s: options %v, want %v", m.Destination, m.Options, want[i])
		}
	}
}
