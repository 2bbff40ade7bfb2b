package certs_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
			out := certdRefuses(t, bus, dir, fmt.Sprintf("homedir = %q\n[est]\nurl = %q\n", filepath.Join(dir, "home"), c.url))
			if !strings.Contains(out, "est.url") {
				t.Errorf("certd's message does not name est.url:\n%s", out)
			}
			if strings.Contains(out, c.secret) {
				t.Errorf("certd logged the EST password %q:\n%s", c.secret, out)
			}
		})
	}
}

// TestCertdDoesNotEchoAChallengePasswordTypedAsItsFile: the secret itself
// written where challenge_password_file wants a path is refused (exit 78)
// naming the setting, and is not in certd's output.
func TestCertdDoesNotEchoAChallengePasswordTypedAsItsFile(t *testing.T) {
	testenv.RequireRoot(t)
	bus := testenv.StartBus(t)
	dir := testenv.SharedTempDir(t, "certd-exit")
	const typed = "Chall3nge-Typed-62"
	out := certdRefuses(t, bus, dir, fmt.Sprintf("homedir = %q\n[est]\nurl = \"https://est.example/.well-known/est\"\nchallenge_password_file = %q\n", filepath.Join(dir, "home"), typed))
	if !strings.Contains(out, "est.challenge_password_file") || !strings.Contains(out, "absolute path") {
		t.Errorf("certd's message does not say challenge_password_file must be an absolute path:\n%s", out)
	}
	if strings.Contains(out, typed) {
		t.Errorf("certd printed the challenge password typed as its file:\n%s", out)
	}
}

// certdRefuses runs the real certd on config and returns its output,
// failing the test unless it exits 78 (bad configuration).
func certdRefuses(t *testing.T, bus *testenv.Bus, dir, config string) string {
	t.Helper()
	cfg := filepath.Join(dir, "certd.toml")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	return testenv.RefusesConfig(t, "./cmd/edgev2-certd", cfg, []string{"DBUS_SYSTEM_BUS_ADDRESS=" + bus.Address})
}
