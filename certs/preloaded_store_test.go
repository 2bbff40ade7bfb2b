package certs_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/internal/testpki"
)

// TestPreloadedCertificateFileIsNotStoredUnderItsFileName: certd keeps
// certificate <id> in <homedir>/<id>.pem, and its state directory is where a
// file only edgecerts may read naturally goes. A trust anchor preloaded as
// file://<homedir>/hubroot.pem was therefore also the file of stored
// certificate "hubroot": a caller polkit allows to import or delete
// "hubroot" (not the preloaded id) replaced or removed the device's trust
// anchor — choosing the CA certd trusts. Such a name is the preloaded
// certificate's, read-only, whether its file exists yet or not.
func TestPreloadedCertificateFileIsNotStoredUnderItsFileName(t *testing.T) {
	testenv.RequireRoot(t)
	d := testenv.StartDevice(t, testenv.DeviceOptions{Keyd: &testenv.Daemon{Args: []string{}}})
	home := d.Home(testenv.Certd)
	uid, gid := testenv.EnsureUser(t, testenv.CertsUser)
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chown(home, uid, gid)
	anchor := testpki.NewCA(t, "device's hub root").PEM()
	file := filepath.Join(home, "hubroot.pem")
	if err := os.WriteFile(file, anchor, 0o644); err != nil {
		t.Fatal(err)
	}
	d.StartDaemon(t, testenv.Certd, testenv.Daemon{Config: "\n[preloaded_certs]\nhub-root = \"file://" + file +
		"\"\nlater = \"file://" + filepath.Join(home, "notyet.pem") + "\"\n"})
	c := d.Certs()
	ctx := ctxT(t)
	attacker := string(testpki.NewCA(t, "attacker CA").PEM())

	if ids, err := c.List(ctx); err != nil || slices.Contains(ids, "hubroot") || !slices.Contains(ids, "hub-root") {
		t.Errorf("List = %v, %v; want the preloaded certificate listed as hub-root only", ids, err)
	}
	for _, name := range []string{"hubroot", "notyet"} {
		if err := c.Import(ctx, name, attacker); !fault.Is(err, fault.ReadOnly) {
			t.Errorf("Import(%s), a preloaded certificate's file = %v; want ReadOnly", name, err)
		}
		if err := c.Delete(ctx, name); !fault.Is(err, fault.ReadOnly) {
			t.Errorf("Delete(%s) = %v; want ReadOnly", name, err)
		}
	}
	if got, err := os.ReadFile(file); err != nil || string(got) != string(anchor) {
		t.Fatalf("the trust anchor's file changed (%v)", err)
	}
	if _, err := os.Stat(filepath.Join(home, "notyet.pem")); !os.IsNotExist(err) {
		t.Errorf("a file was written where preloaded certificate later will be read from (%v)", err)
	}
	if got, err := c.Get(ctx, "hub-root"); err != nil || got != string(anchor) {
		t.Errorf("Get(hub-root) = %.40q, %v; want the trust anchor", got, err)
	}
	if err := c.Import(ctx, "hub-root-2", attacker); err != nil {
		t.Errorf("Import under another id: %v", err)
	}
}
