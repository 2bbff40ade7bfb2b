package certs_test

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

// TestCertdBadESTURLDoesNotLogItsPassword runs the real certd on [est] url
// settings that carry the EST password (user:password@, or a password that
// breaks the URL's parse): certd refuses the file (exit 78) naming est.url,
// and the password is in neither its log nor its message.
func TestCertdBadESTURLDoesNotLogItsPassword(t *testing.T) {
	testenv.RequireRoot(t)
	bus := testenv.StartBus(t)
	dir := testenv.SharedTempDir(t, "certd-exit")
	for _, c := range []struct{ name, url, secret string }{
		{"plain http with credentials", "http://factory:Pl41n-http-pw@est.example/.well-known/est", "Pl41n-http-pw"},
		{"https with credentials", "https://factory:Https-pw-7781@est.example/.well-known/est", "Https-pw-7781"},
		{"password breaks the parse", "https://factory:50%off-Pw-9931@est.example/.well-known/est", "off-Pw-9931"},
		{"bad port after credentials", "https://factory:Port-pw-4417@est.example:44x3/.well-known/est", "Port-pw-4417"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := filepath.Join(dir, "certd.toml")
			data := fmt.Sprintf("homedir = %q\n[est]\nurl = %q\n", filepath.Join(dir, "home"), c.url)
			if err := os.WriteFile(cfg, []byte(data), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(testenv.BuildBinary(t, "./cmd/edgev2-certd"), "--config", cfg, "--log-level", "debug")
			cmd.Env = []string{"DBUS_SYSTEM_BUS_ADDRESS=" + bus.Address}
			timer := time.AfterFunc(2*time.Minute, func() { cmd.Process.Kill() })
			out, err := cmd.CombinedOutput()
			timer.Stop()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 78 {
				t.Fatalf("certd: %v; want exit 78 (bad configuration)\n%s", err, out)
			}
			if !strings.Contains(string(out), "est.url") {
				t.Errorf("certd's message does not name est.url:\n%s", out)
			}
			if strings.Contains(string(out), c.secret) {
				t.Errorf("certd logged the EST password %q:\n%s", c.secret, out)
			}
		})
	}
}
