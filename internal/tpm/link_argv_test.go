package tpm

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgev2/edgev2/internal/testenv"
)

// TestLinkKeepsAuthValuesOutOfArgv proves that no tpm2 tool tpm2_ptool
// runs for a link carries an authorization value in its argv, which every
// local user can read in /proc/PID/cmdline while it runs: tpm2_unseal's
// -p is the token's seal auth, a hash of the user PIN (with the store, it
// unwraps every key of the token), and tpm2_load's -P the primary's auth.
// Each tool is wrapped by a script that records its argv.
func TestLinkKeepsAuthValuesOutOfArgv(t *testing.T) {
	testenv.RequireRoot(t)
	sw := testenv.StartSwtpm(t)
	blobs := filepath.Join(t.TempDir(), "tpm")
	mustTPM(t, sw, "ldevid", "create", "--blobs", blobs)
	tok := testenv.NewTPM2PKCS11Token(t, sw, "edgev2", 0, 0, testenv.TPM2PKCS11Options{PrimaryHandle: "0x81000001"})
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", tok.Broker.BusAddress)

	bin, record := t.TempDir(), filepath.Join(t.TempDir(), "argv")
	for _, tool := range []string{"tpm2_unseal", "tpm2_load", "tpm2_create", "tpm2_createprimary", "tpm2_import", "tpm2_encryptdecrypt", "tpm2_evictcontrol", "tpm2_changeauth"} {
		real, err := exec.LookPath(tool)
		if err != nil {
			t.Fatalf("%s: %v", tool, err)
		}
		script := fmt.Sprintf("#!/bin/sh\nprintf '%%s\\0' %s \"$@\" >> %s\nprintf '\\n' >> %s\nexec %s \"$@\"\n", tool, record, record, real)
		if err := os.WriteFile(filepath.Join(bin, tool), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))

	linked, err := LinkLDevID(ctxT(t), LinkOptions{Store: tok.Store, Token: tok.Label, PIN: []byte(tok.PIN), BlobDir: blobs, TCTI: tok.TCTI})
	if err != nil || !linked {
		t.Fatalf("LinkLDevID = %v, %v", linked, err)
	}
	data, _ := os.ReadFile(record)
	if !strings.Contains(string(data), "tpm2_unseal\x00") {
		t.Fatalf("tpm2_unseal never ran through the wrapper; recorded: %q", data)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		argv := strings.Split(strings.TrimSuffix(line, "\x00"), "\x00")
		for i := 1; i < len(argv)-1; i++ {
			if a := argv[i]; a != "-p" && a != "-P" {
				continue
			}
			if v := argv[i+1]; v != "" && !strings.HasPrefix(v, "file:") && !strings.HasPrefix(v, "session:") {
				t.Errorf("%s ran with an authorization value in its argv (readable by every user in /proc): %s %q", argv[0], argv[i], v)
			}
		}
	}
}
