package testenv

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	certsapi "github.com/edgev2/edgev2/certs/api"
	"github.com/edgev2/edgev2/fault"
)

// TestDeviceDaemonStartedInASubtestKeepsItsGrant: a daemon the device
// starts in a subtest runs on, with the grant compiled from its config,
// after the subtest ends (certd makes the key of the certificate it
// issues only through that grant); its config names the cloud through the
// placeholders and is its user's alone; a key no certificate of certd's
// config has stays refused to it.
func TestDeviceDaemonStartedInASubtestKeepsItsGrant(t *testing.T) {
	d := StartDevice(t, DeviceOptions{Keyd: &Daemon{}, Cloud: &Cloud{Host: "cloud.example.test", CAPEM: []byte("not read by certd\n")}})
	t.Run("StartCertd", func(t *testing.T) {
		d.StartDaemon(t, Certd, Daemon{Config: "[cert_issuance.edge-server]\nmethod = \"self_signed\"\ncommon_name = \"$CLOUD_HOST\"\n"})
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pemText, err := d.Certs().Ensure(ctx, "edge-server")
	if err != nil {
		t.Fatalf("certd issuing edge-server after the subtest that started it: %v\n%s", err, d.Output(Certd))
	}
	chain, err := certsapi.ParseChainPEM(pemText)
	if err != nil || chain[0].Subject.CommonName != "cloud.example.test" {
		t.Fatalf("edge-server %v, %v; want common name cloud.example.test ($CLOUD_HOST)", chain, err)
	}
	if fi, err := os.Stat(d.ConfigPath(Certd)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("certd's config: %v, %v; want 0600", fi, err)
	}
	if !d.Daemon(Certd).IsRunning() || d.Daemon(Keyd).Pid() == d.Daemon(Certd).Pid() {
		t.Fatal("certd is not running as its own process")
	}
	// certd's grant covers its certificates' keys, not others.
	_, errOut, code := d.Bus.Busctl(t, CertsUser, "call", "org.edgev2.Keys1", "/org/edgev2/Keys1", "org.edgev2.Keys1",
		"CreateKeyPair", "ssa{sv}", "rogue", "ec-p256", "0")
	if code == 0 || !strings.Contains(errOut, "not authorized") {
		t.Fatalf("certd making a key its config has no certificate for: exit %d %s; want NotAuthorized", code, errOut)
	}
	if _, err := d.Keys().GetKey(ctx, "rogue"); !fault.Is(err, fault.NotFound) {
		t.Fatalf("the refused key exists: %v", err)
	}
}
