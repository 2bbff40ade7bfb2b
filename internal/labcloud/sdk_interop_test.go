package labcloud_test

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/edgev2/edgev2/internal/labcloud"
	"github.com/edgev2/edgev2/internal/labcloud/hub"
	"github.com/edgev2/edgev2/internal/testenv"
)

// nodeSDK installs the pinned Azure IoT device SDK for Node
// (testdata/node-sdk, package-lock.json) once per lock file into
// /var/tmp, and returns the directory holding send.js.
func nodeSDK(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, tool, "the Azure IoT device SDK for Node runs against labcloud (Debian: nodejs, npm)")
		}
	}
	src := filepath.Join("testdata", "node-sdk")
	lock, err := os.ReadFile(filepath.Join(src, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(lock)
	dir := filepath.Join(os.TempDir(), "edgev2-node-sdk-"+hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// One installer at a time across test processes.
	lf, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"package.json", "package-lock.json", "send.js"} {
		data, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", ".installed")); err != nil {
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			testenv.Missing(t, "the Azure IoT device SDK for Node", "npm ci in "+dir+" failed (is the npm registry reachable?): "+err.Error()+": "+string(out))
		}
		os.WriteFile(filepath.Join(dir, "node_modules", ".installed"), nil, 0o644)
	}
	return dir
}

// The Azure IoT device SDK for Node, given a connection string whose
// HostName is labcloud's bare hub name, sends a device-to-cloud message
// over its HTTP transport with its own TLS (the name verified against the
// lab CA) and SAS. With the hub name labcloud used to hand out
// ("127.x.y.z:PORT") the same SDK call fails: the SDK puts the whole host
// name, port included, into the host it resolves and connects to.
func TestAzureNodeSDKSendsToTheBareHubName(t *testing.T) {
	testenv.RequireRoot(t)
	dir := nodeSDK(t)
	const key = "ZGV2aWNlLWtleS0wMTIzNDU2Nzg5YWJjZGVmMDEyMzQ="
	c := labcloud.StartTestCloud(t, labcloud.Config{Hub: hub.Config{Devices: []hub.DeviceConfig{{DeviceID: "sdk-dev", PrimaryKey: key}}}})
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, c.CAPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	send := func(hostName string) (string, error) {
		cmd := exec.Command("node", "send.js", "HostName="+hostName+";DeviceId=sdk-dev;SharedAccessKey="+key)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "NODE_EXTRA_CA_CERTS="+ca)
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	if out, err := send(c.HubHostname); err != nil || out != "sent" {
		t.Fatalf("SDK sendEvent to HostName=%s: %v: %s", c.HubHostname, err, out)
	}
	if n := c.Hub.AcceptedMessages("sdk-dev", ""); n != 1 {
		t.Fatalf("the hub accepted %d messages from the SDK, want 1", n)
	}
	// The old shape: a hub "name" with a port. The SDK cannot use it.
	if out, err := send(c.Addr); err == nil || out == "sent" {
		t.Fatalf("SDK sendEvent to HostName=%s (host:port) succeeded: %s", c.Addr, out)
	} else {
		t.Logf("with HostName=%s the SDK fails, as the issue reported: %s", c.Addr, out)
	}
	if n := c.Hub.AcceptedMessages("sdk-dev", ""); n != 1 {
		t.Fatalf("the hub accepted %d messages, want still 1", n)
	}
}
