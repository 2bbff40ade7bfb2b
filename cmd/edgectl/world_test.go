package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cclient "github.com/edgev2/edgev2/certs/client"
	"github.com/edgev2/edgev2/internal/testenv"
	kclient "github.com/edgev2/edgev2/keys/client"
	godbus "github.com/godbus/dbus/v5"
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
	etc        string // the daemons' configs (keyd.toml, ...)
	bus        *testenv.Bus
	polkit     *testenv.Polkit
	lab        *testenv.Labcloud
	ctr        *testenv.Containerd
	reg        *testenv.Registry
	certd      *testenv.Service
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
	w := &world{actionsDir: filepath.Join(testenv.RepoRoot(), "policy"), edgectl: testenv.BuildBinary(t, "./cmd/edgectl")}
	w.reg = testenv.StartRegistry(t, "edge", registryPassword)
	noArgs := []string{}
	d := testenv.StartDevice(t, testenv.DeviceOptions{
		Labcloud: fmt.Sprintf(`[est]
[[est.users]]
name = "factory"
password = %q
[hub]
[[hub.devices]]
device_id = "edge-gw-1"
primary_key = %q
`, estPassword, hubDeviceKey),
		Keyd: &testenv.Daemon{Args: noArgs},
		Certd: &testenv.Daemon{Args: noArgs, Config: fmt.Sprintf(`[preloaded_certs]
labcloud-ca = "file://$CLOUD_CA"
[est]
url = "$CLOUD_URL/.well-known/est"
trusted_certs = ["labcloud-ca"]
username = "factory"
password = %q
[cert_issuance.device-cert]
method = "self_signed"
key_id = "device-id"
common_name = "edge-gw-1"
expiry_days = 30
`, estPassword)},
		Identityd: &testenv.Daemon{Args: noArgs, Config: fmt.Sprintf(`hostname = "edge-gw-1"
[provisioning]
source = "manual"
connection_string = "HostName=$CLOUD_HOST;DeviceId=edge-gw-1;SharedAccessKey=%s"
[cloud]
trusted_certs = ["labcloud-ca"]
timeout_s = 5
retry_max_s = 2
`, hubDeviceKey)},
		Modrtd: &testenv.Daemon{Args: noArgs, Namespace: "edgev2-edgectl", Config: fmt.Sprintf("registry_ca_files = [%q]\n", w.reg.CAFile)},
	})
	w.etc, w.bus, w.polkit, w.lab, w.ctr, w.env = d.Dir, d.Bus, d.Polkit, d.Lab, d.Ctr, d.Env()
	w.certd = d.Daemon(testenv.Certd)
	w.conn, w.keys, w.certs = d.Conn(), d.Keys(), d.Certs()

	ctx := testCtx(t)
	if _, err := w.certs.Ensure(ctx, "device-cert"); err != nil {
		t.Fatalf("issue device-cert: %v", err)
	}
	ic := d.Identity()
	if !testenv.WaitFor(30*time.Second, func() bool { st, _ := ic.State(ctx); return st == "provisioned" }) {
		info, _ := ic.ProvisioningInfo(ctx)
		t.Fatalf("identityd did not provision: %s", info.LastError)
	}
	return w
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
