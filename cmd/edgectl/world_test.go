package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	certsapi "github.com/edgev2/edgev2/certs/api"
	cclient "github.com/edgev2/edgev2/certs/client"
	idapi "github.com/edgev2/edgev2/identity/api"
	iclient "github.com/edgev2/edgev2/identity/client"
	"github.com/edgev2/edgev2/internal/superconfig"
	"github.com/edgev2/edgev2/internal/testenv"
	keysapi "github.com/edgev2/edgev2/keys/api"
	kclient "github.com/edgev2/edgev2/keys/client"
	rtapi "github.com/edgev2/edgev2/modrt/api"
)

// Secrets the world's configs hold; no edgectl output may show them.
const (
	hubDeviceKey     = "ZWRnZWN0bC10ZXN0LWRldmljZS1zYXMta2V5LTAxMjM0NTY=" // base64, 35 bytes
	estPassword      = "edgectl-factory-pa55"
	registryPassword = "edgectl-registry-pa55"
)

// world is a device on one machine: a private system bus, the real
// polkitd, keyd (file engine), certd, identityd (manual provisioning with a
// connection string, against labcloud's hub), containerd and modrtd, with
// their configs in etc as `edgectl config apply` would write them.
type world struct {
	dir, etc   string
	bus        *testenv.Bus
	polkit     *testenv.Polkit
	lab        *testenv.Labcloud
	ctr        *testenv.Containerd
	reg        *testenv.Registry
	keyd       *testenv.Service
	certd      *testenv.Service
	identityd  *testenv.Service
	modrtd     *testenv.Service
	conn       *godbus.Conn
	keys       *kclient.Client
	certs      *cclient.Client
	edgectl    string
	env        []string
	actionsDir string
}

func startWorld(t *testing.T) *world {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.EnsureAllUsers(t)
	w := &world{dir: testenv.SharedTempDir(t, "edgectl")}
	w.etc = filepath.Join(w.dir, "etc")
	os.Mkdir(w.etc, 0o755)
	w.actionsDir = filepath.Join(testenv.RepoRoot(), "policy")
	w.edgectl = testenv.BuildBinary(t, "./cmd/edgectl")
	w.bus = testenv.StartBus(t)
	w.env = []string{"DBUS_SYSTEM_BUS_ADDRESS=" + w.bus.Address}
	w.polkit = testenv.StartPolkit(t, w.bus)
	w.lab = testenv.StartLabcloud(t, fmt.Sprintf(`[est]
[[est.users]]
name = "factory"
password = %q
[hub]
[[hub.devices]]
device_id = "edge-gw-1"
primary_key = %q
`, estPassword, hubDeviceKey))
	hostPort := strings.TrimPrefix(w.lab.URL, "https://")
	caPEM, err := os.ReadFile(w.lab.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(w.dir, "labcloud-ca.pem")
	os.WriteFile(caFile, caPEM, 0o644)
	w.ctr = testenv.StartContainerd(t)
	w.reg = testenv.StartRegistry(t, "edge", registryPassword)

	w.writeConfig(t, "keyd", testenv.ServiceUser, "")
	w.writeConfig(t, "certd", testenv.CertsUser, fmt.Sprintf(`[preloaded_certs]
labcloud-ca = "file://%s"
[est]
url = "%s/.well-known/est"
trusted_certs = ["labcloud-ca"]
username = "factory"
password = %q
[cert_issuance.device-cert]
method = "self_signed"
key_id = "device-id"
common_name = "edge-gw-1"
expiry_days = 30
`, caFile, w.lab.URL, estPassword))
	w.writeConfig(t, "identityd", testenv.IdentityUser, fmt.Sprintf(`hostname = "edge-gw-1"
[provisioning]
source = "manual"
connection_string = "HostName=%s;DeviceId=edge-gw-1;SharedAccessKey=%s"
[cloud]
trusted_certs = ["labcloud-ca"]
timeout_s = 5
retry_max_s = 2
`, hostPort, hubDeviceKey))
	w.writeConfig(t, "modrtd", "root", fmt.Sprintf("containerd_address = %q\nnamespace = \"edgev2-edgectl\"\nregistry_ca_files = [%q]\n", w.ctr.Address, w.reg.CAFile))

	// The services' grants, compiled from their configs as `config apply`
	// writes them.
	certdText, _ := os.ReadFile(filepath.Join(w.etc, "certd.toml"))
	identitydText, _ := os.ReadFile(filepath.Join(w.etc, "identityd.toml"))
	modrtdText, _ := os.ReadFile(filepath.Join(w.etc, "modrtd.toml"))
	grants, err := superconfig.ServiceRulesFor(superconfig.ServiceConfigs{Certd: certdText, Identityd: identitydText, Modrtd: modrtdText})
	if err != nil {
		t.Fatalf("compile the services' grants: %v", err)
	}
	w.polkit.AddRule(t, "service-grants", string(grants))

	start := func(bin, name, user, busName string) *testenv.Service {
		return testenv.StartService(t, w.bus, testenv.ServiceOptions{
			Binary: testenv.BuildBinary(t, bin), Args: []string{"--config", filepath.Join(w.etc, name+".toml")},
			User: user, BusName: busName,
		})
	}
	w.keyd = start("./cmd/edgev2-keyd", "keyd", testenv.ServiceUser, keysapi.BusName)
	w.certd = start("./cmd/edgev2-certd", "certd", testenv.CertsUser, certsapi.BusName)
	w.identityd = start("./cmd/edgev2-identityd", "identityd", testenv.IdentityUser, idapi.BusName)
	w.modrtd = start("./cmd/edgev2-modrtd", "modrtd", "root", rtapi.BusName)
	w.conn = w.bus.Conn(t)
	w.keys, w.certs = kclient.New(w.conn), cclient.New(w.conn)

	ctx := testCtx(t)
	if _, err := w.certs.Ensure(ctx, "device-cert"); err != nil {
		t.Fatalf("issue device-cert: %v", err)
	}
	ic := iclient.New(w.conn)
	if !testenv.WaitFor(30*time.Second, func() bool { st, _ := ic.State(ctx); return st == "provisioned" }) {
		info, _ := ic.ProvisioningInfo(ctx)
		t.Fatalf("identityd did not provision: %s", info.LastError)
	}
	return w
}

// writeConfig writes etc/<name>.toml (with a homedir) owned by user.
func (w *world) writeConfig(t *testing.T, name, user, text string) {
	t.Helper()
	uid, gid := testenv.EnsureUser(t, user)
	os.Mkdir(filepath.Join(w.dir, "state"), 0o755)
	home := filepath.Join(w.dir, "state", name)
	os.Mkdir(home, 0o700)
	os.Chown(home, uid, gid)
	path := filepath.Join(w.etc, name+".toml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf("homedir = %q\n%s", home, text)), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chown(path, uid, gid)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// run runs edgectl as user against the world's bus.
func (w *world) run(t *testing.T, user string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return testenv.RunAs(t, user, w.env, w.edgectl, args...)
}

// runJSON runs edgectl as root, wants exit 0, and decodes its JSON.
func (w *world) runJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out, errOut, code := w.run(t, "root", args...)
	if code != 0 {
		t.Fatalf("edgectl %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("edgectl %s printed no valid JSON (%v):\n%s", strings.Join(args, " "), err, out)
	}
}

// checkArgs are the check flags that point at the world.
func (w *world) checkArgs(extra ...string) []string {
	return append([]string{"check", "--output", "json", "-c", filepath.Join(w.etc, "config.toml"),
		"--config-dir", w.etc, "--polkit-actions-dir", w.actionsDir, "--timeout", "3s"}, extra...)
}

// check runs edgectl check as root and returns the report and exit code.
func (w *world) check(t *testing.T, extra ...string) (checkReport, int) {
	t.Helper()
	out, errOut, code := w.run(t, "root", w.checkArgs(extra...)...)
	var rep checkReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("check printed no valid JSON (%v); exit %d; stderr %s\n%s", err, code, errOut, out)
	}
	return rep, code
}

func (r checkReport) find(name string) (checkResult, bool) {
	for _, c := range r.Checks {
		if c.Name == name {
			return c, true
		}
	}
	return checkResult{}, false
}
