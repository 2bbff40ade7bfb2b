package adapter_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgev2/edgev2/internal/testenv"
)

// TestKeydDoesNotEchoAPINTypedAsPinSource: an admin who writes the PIN
// itself where pin-source wants a file (pin-source=<PIN>, or a file: URI
// around it) gets keyd's refusal (exit 78) naming the setting and saying
// pin-source must be an absolute path; the PIN is not in keyd's output.
func TestKeydDoesNotEchoAPINTypedAsPinSource(t *testing.T) {
	testenv.RequireRoot(t)
	uid, gid := testenv.EnsureUser(t, testenv.ServiceUser)
	bus := testenv.StartBus(t)
	tok := testenv.NewSoftHSMToken(t, "edgev2-pinsrc", uid, gid)
	dir := testenv.SharedTempDir(t, "keyd-pinsource")
	const typedPIN = "58213094"
	tokURI := "pkcs11:token=" + tok.Label
	for _, c := range []struct{ name, config, says string }{
		{"base slot", fmt.Sprintf("homedir = %q\npkcs11_lib_path = %q\npkcs11_base_slot = %q\n", dir, tok.LibPath, tokURI+"?pin-source="+typedPIN), "pkcs11_base_slot"},
		{"base slot file: URI", fmt.Sprintf("homedir = %q\npkcs11_lib_path = %q\npkcs11_base_slot = %q\n", dir, tok.LibPath, tokURI+"?pin-source=file:"+typedPIN), "pkcs11_base_slot"},
		{"preloaded key", fmt.Sprintf("homedir = %q\npkcs11_lib_path = %q\n[preloaded_keys]\nk = %q\n", dir, tok.LibPath, tokURI+";object=k?pin-source="+typedPIN), "preloaded_keys.k"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := filepath.Join(dir, "keyd.toml")
			if err := os.WriteFile(cfg, []byte(c.config), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(testenv.BuildBinary(t, "./cmd/edgev2-keyd"), "--config", cfg, "--log-level", "debug")
			cmd.Env = append([]string{"DBUS_SYSTEM_BUS_ADDRESS=" + bus.Address}, tok.Env()...)
			timer := time.AfterFunc(2*time.Minute, func() { cmd.Process.Kill() })
			out, err := cmd.CombinedOutput()
			timer.Stop()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 78 {
				t.Fatalf("keyd: %v; want exit 78 (bad configuration)\n%s", err, out)
			}
			if !strings.Contains(string(out), c.says) || !strings.Contains(string(out), "pin-source") {
				t.Errorf("keyd's message does not name %s and pin-source:\n%s", c.says, out)
			}
			if strings.Contains(string(out), typedPIN) {
				t.Errorf("keyd printed the PIN typed as pin-source:\n%s", out)
			}
		})
	}
}
