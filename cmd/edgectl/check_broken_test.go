package main

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/internal/testpki"
)

// brokenSetup is one way a device can be broken, what check must say, and
// how to mend it again.
type brokenSetup struct {
	name    string
	breakIt func(t *testing.T, w *world) []string // returns extra check flags
	check   string                                // the check that must fail
	message string                                // in its message
	fix     string                                // in its fix
	mend    func(t *testing.T, w *world)
}

// unreachableHub is a bare hub name (".test": reserved, never in DNS) that
// no one answers for.
const unreachableHub = "unreachable.labcloud.test"

func expiredCertPEM(t *testing.T) string {
	t.Helper()
	expired := func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)
	}
	return string(testpki.NewCA(t, "old vendor CA", expired).PEM())
}

// brokenConfigDir copies the world's configs and replaces name.toml.
func brokenConfigDir(t *testing.T, w *world, name, text string) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range []string{"keyd", "certd", "identityd", "modrtd"} {
		b, err := os.ReadFile(filepath.Join(w.etc, n+".toml"))
		if err != nil {
			t.Fatal(err)
		}
		if n == name {
			b = []byte(text)
		}
		os.WriteFile(filepath.Join(dir, n+".toml"), b, 0o600)
	}
	return dir
}

var brokenSetups = []brokenSetup{
	{
		name:    "service not running",
		breakIt: func(t *testing.T, w *world) []string { w.certd.Stop(t); return nil },
		check:   "service.certd", message: "edgev2-certd is not running", fix: "systemctl start edgev2-certd",
		mend: func(t *testing.T, w *world) { w.certd.Restart(t) },
	},
	{
		name: "key missing",
		breakIt: func(t *testing.T, w *world) []string {
			if err := w.keys.DeleteKey(testCtx(t), "device-id"); err != nil {
				t.Fatal(err)
			}
			return nil
		},
		check: "certs.device-cert", message: `its key "device-id"`, fix: "edgectl keys create device-id",
		mend: func(t *testing.T, w *world) {
			if _, err := w.keys.CreateKeyPair(testCtx(t), "device-id", "ec-p256"); err != nil {
				t.Fatal(err)
			}
			if err := w.certs.Renew(testCtx(t), "device-cert"); err != nil {
				t.Fatal(err)
			}
		},
	},
	{
		name: "certificate does not match its key",
		breakIt: func(t *testing.T, w *world) []string {
			ctx := testCtx(t)
			if err := w.keys.DeleteKey(ctx, "device-id"); err != nil {
				t.Fatal(err)
			}
			if _, err := w.keys.CreateKeyPair(ctx, "device-id", "ec-p256"); err != nil {
				t.Fatal(err)
			}
			return nil
		},
		check: "certs.device-cert", message: `does not match key "device-id"`, fix: "edgectl certs renew device-cert",
		mend: func(t *testing.T, w *world) {
			// The fix check printed, as printed.
			if out, errOut, code := w.run(t, "root", "certs", "renew", "device-cert"); code != 0 || !strings.Contains(out, "renewed") {
				t.Fatalf("edgectl certs renew: exit %d %s %s", code, out, errOut)
			}
		},
	},
	{
		name: "certificate expired",
		breakIt: func(t *testing.T, w *world) []string {
			if err := w.certs.Import(testCtx(t), "old-vendor-ca", expiredCertPEM(t)); err != nil {
				t.Fatal(err)
			}
			return nil
		},
		check: "certs.expiry.old-vendor-ca", message: `certificate "old-vendor-ca" expired at`, fix: "edgectl certs renew old-vendor-ca",
		mend: func(t *testing.T, w *world) {
			if err := w.certs.Delete(testCtx(t), "old-vendor-ca"); err != nil {
				t.Fatal(err)
			}
		},
	},
	{
		name: "config invalid, with its line",
		breakIt: func(t *testing.T, w *world) []string {
			dir := brokenConfigDir(t, w, "keyd", "homedir = \"/var/lib/edgev2/keyd\"\n\npkcs11_lib_path = \"/usr/lib/softhsm/libsofthsm2.so\n")
			return []string{"--config-dir", dir}
		},
		check: "config.keyd", message: "line 3", fix: "correct",
	},
	{
		name: "super-config invalid, with its line",
		breakIt: func(t *testing.T, w *world) []string {
			path := filepath.Join(t.TempDir(), "config.toml")
			os.WriteFile(path, []byte("hostname = \"gw\"\n\n[provisioning]\nsource = \"carrier-pigeon\"\n"), 0o600)
			return []string{"-c", path}
		},
		check: "config.super", message: "line 4, key provisioning.source", fix: `use "manual"`,
	},
	{
		name: "config with an unknown setting",
		breakIt: func(t *testing.T, w *world) []string {
			dir := brokenConfigDir(t, w, "certd", "homedir = \"/var/lib/edgev2/certd\"\nrenewal_treshold = \"80%\"\n")
			return []string{"--config-dir", dir}
		},
		check: "config.certd", message: "renewal_treshold", fix: "spelling",
	},
	{
		name: "cloud endpoint unreachable",
		breakIt: func(t *testing.T, w *world) []string {
			// A hub name (bare, as every hub's) at which nothing listens on 443.
			dir := brokenConfigDir(t, w, "identityd", "homedir = \"/var/lib/edgev2/identityd\"\n[provisioning]\nsource = \"manual\"\n"+
				"connection_string = \"HostName="+unreachableHub+";DeviceId=edge-gw-1;SharedAccessKey="+hubDeviceKey+"\"\n")
			return []string{"--config-dir", dir}
		},
		check: "cloud.hub", message: unreachableHub, fix: "check the network, DNS and firewall",
	},
	{
		name: "cloud certificate not trusted",
		breakIt: func(t *testing.T, w *world) []string {
			dir := brokenConfigDir(t, w, "certd", fmt.Sprintf("homedir = \"/var/lib/edgev2/certd\"\n[est]\nurl = \"%s/.well-known/est\"\n", w.lab.URL))
			return []string{"--config-dir", dir}
		},
		check: "cloud.est", message: "certificate", fix: "add its CA to trusted_certs",
	},
	{
		name:    "polkit actions not installed",
		breakIt: func(t *testing.T, w *world) []string { return []string{"--polkit-actions-dir", t.TempDir()} },
		check:   "polkit.actions", message: "org.edgev2.policy", fix: "reinstall the edgev2 package",
	},
	{
		name: "containerd not reachable",
		breakIt: func(t *testing.T, w *world) []string {
			return []string{"--containerd-socket", filepath.Join(t.TempDir(), "none.sock")}
		},
		check: "containerd", message: "containerd is not reachable", fix: "systemctl start containerd",
	},
}

func testCheckBroken(t *testing.T, w *world) {
	for _, b := range brokenSetups {
		t.Run(strings.ReplaceAll(b.name, " ", "_"), func(t *testing.T) {
			extra := b.breakIt(t, w)
			rep, code := w.check(t, extra...)
			c, ok := rep.find(b.check)
			if code != exitFailed || rep.Status != statusError || !ok || c.Status != statusError {
				t.Fatalf("check exit %d, status %s; %s = %+v (present %v); want error\n%+v", code, rep.Status, b.check, c, ok, rep.Checks)
			}
			if !strings.Contains(c.Message, b.message) || !strings.Contains(c.Fix, b.fix) {
				t.Fatalf("%s: message %q, fix %q; want them to contain %q and %q", b.check, c.Message, c.Fix, b.message, b.fix)
			}
			// Specific: only this problem is reported as an error.
			for _, o := range rep.Checks {
				if o.Status == statusError && o.Name != b.check {
					t.Errorf("also reported: %+v", o)
				}
			}
			if b.mend != nil {
				b.mend(t, w)
			}
			if rep, code := w.check(t); code != 0 {
				t.Fatalf("after mending %q, check still fails: %+v", b.name, rep.Checks)
			}
		})
	}
}

func testCheckClock(t *testing.T, w *world) {
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", w.bus.Address)
	o := checkOptions{superConfig: filepath.Join(w.etc, "config.toml"), configDir: w.etc, polkitActionsDir: w.actionsDir,
		timeout: 3 * time.Second, expiryWarning: 7 * 24 * time.Hour,
		now: func() time.Time { return time.Date(2021, 3, 1, 0, 0, 0, 0, time.UTC) }}
	rep := runChecks(testCtx(t), o)
	var clock []checkResult
	for _, c := range rep.Checks {
		if c.Name == "clock" {
			clock = append(clock, c)
		}
	}
	if len(clock) == 0 {
		t.Fatalf("no clock check: %+v", rep.Checks)
	}
	for _, c := range clock {
		if c.Status != statusError || !strings.Contains(c.Fix, "NTP") {
			t.Fatalf("a 2021 clock: %+v", clock)
		}
	}
	// Thirty days on, device-cert (30 days) has expired and the rest warn.
	o.now = func() time.Time { return time.Now().Add(31 * 24 * time.Hour) }
	rep = runChecks(testCtx(t), o)
	if c, ok := rep.find("certs.expiry.device-cert"); !ok || c.Status != statusError || !strings.Contains(c.Message, "expired") {
		t.Fatalf("31 days on, device-cert: %+v", c)
	}
	o.now = func() time.Time { return time.Now().Add(25 * 24 * time.Hour) }
	rep = runChecks(testCtx(t), o)
	if c, ok := rep.find("certs.expiry.device-cert"); !ok || c.Status != statusWarning || !strings.Contains(c.Message, "expires in") {
		t.Fatalf("25 days on, device-cert: %+v", c)
	}
}

func testCheckAsOrdinaryUser(t *testing.T, w *world) {
	out, errOut, _ := w.run(t, testenv.OtherUser, w.checkArgs()...)
	var rep checkReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("check as %s printed no JSON (%v): %s %s", testenv.OtherUser, err, out, errOut)
	}
	c, ok := rep.find("config.keyd")
	if !ok || c.Status != statusWarning || !strings.Contains(c.Fix, "as root") {
		t.Fatalf("an unreadable keyd.toml as an ordinary user: %+v", c)
	}
}
