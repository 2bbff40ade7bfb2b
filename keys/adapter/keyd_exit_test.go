package adapter_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/keys"
)

// TestKeydConfigErrorsExit78 runs the real keyd binary on each kind of
// configuration mistake and asserts exit code 78 (EX_CONFIG): the unit's
// RestartPreventExitStatus=78 keeps systemd from retrying what restarting
// cannot fix — above all a wrong PIN, which would lock the token (and
// keyd says it is the PIN, without printing it, nor a PIN an admin wrote
// where pin-source wants a file).
func TestKeydConfigErrorsExit78(t *testing.T) {
	testenv.RequireRoot(t)
	uid, gid := testenv.EnsureUser(t, testenv.ServiceUser)
	bus := testenv.StartBus(t)
	tok := testenv.NewSoftHSMToken(t, "edgev2-exit78", uid, gid)
	dir := testenv.SharedTempDir(t, "keyd-exit")
	emptyPIN := filepath.Join(dir, "empty.pin")
	os.WriteFile(emptyPIN, []byte("\n"), 0o600)
	base := func(uri string) string {
		return fmt.Sprintf("homedir = %q\npkcs11_lib_path = %q\npkcs11_base_slot = %q\n", dir, tok.LibPath, uri)
	}
	tokURI := "pkcs11:token=" + tok.Label
	const typedPIN = "58213094"
	for _, c := range []struct {
		name, config, says string
		alsoSays           string // a regexp, if set
	}{
		{"unknown setting", fmt.Sprintf("homedir = %q\nno_such_setting = 1\n", dir), "no_such_setting", ""},
		{"relative homedir", "homedir = \"var/lib/keyd\"\n", "homedir", ""},
		{"base slot not a URI", base("token=x"), "pkcs11_base_slot", ""},
		{"pin-source missing file", base(tokURI + "?pin-source=file://" + filepath.Join(dir, "no-such.pin")), "no-such.pin", ""},
		{"pin-source empty file", base(tokURI + "?pin-source=" + emptyPIN), "is empty", ""},
		{"pin-source relative path", base(tokURI + "?pin-source=keyd.pin"), "not an absolute path", ""},
		{"pin-source relative file URI", base(tokURI + "?pin-source=file:keyd.pin"), "pin-source", ""},
		{"token needs a PIN, none given", base(tokURI), "no pin-value or pin-source", ""},
		{"wrong PIN", base(tokURI + "?pin-value=wrong-pin-4711"), "wrong", `(?i)pin`},
		{"no such token", base("pkcs11:token=no-such-token?pin-value=1234"), "matches no token", ""},
		{"preloaded pin-source relative", fmt.Sprintf("homedir = %q\npkcs11_lib_path = %q\n[preloaded_keys]\nk = \"pkcs11:token=x;object=k?pin-source=pin.txt\"\n", dir, tok.LibPath), "preloaded_keys.k", ""},
		// The PIN itself written where pin-source wants a file: named, never printed.
		{"PIN typed as pin-source", base(tokURI + "?pin-source=" + typedPIN), "pkcs11_base_slot", "pin-source"},
		{"PIN typed as pin-source file: URI", base(tokURI + "?pin-source=file:" + typedPIN), "pkcs11_base_slot", "pin-source"},
		{"PIN typed as a preloaded key's pin-source", fmt.Sprintf("homedir = %q\npkcs11_lib_path = %q\n[preloaded_keys]\nk = %q\n", dir, tok.LibPath, tokURI+";object=k?pin-source="+typedPIN), "preloaded_keys.k", "pin-source"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := filepath.Join(dir, "keyd.toml")
			if err := os.WriteFile(cfg, []byte(c.config), 0o600); err != nil {
				t.Fatal(err)
			}
			out := []byte(testenv.RefusesConfig(t, "./cmd/edgev2-keyd", cfg, append([]string{"DBUS_SYSTEM_BUS_ADDRESS=" + bus.Address}, tok.Env()...)))
			if !strings.Contains(string(out), c.says) {
				t.Errorf("keyd's message does not say %q:\n%s", c.says, out)
			}
			if c.alsoSays != "" && !regexp.MustCompile(c.alsoSays).Match(out) {
				t.Errorf("keyd's message does not say %s:\n%s", c.alsoSays, out)
			}
			if strings.Contains(string(out), tok.PIN) || strings.Contains(string(out), "wrong-pin-4711") || strings.Contains(string(out), typedPIN) {
				t.Errorf("keyd printed a PIN:\n%s", out)
			}
		})
	}
}

// TestKeydPreloadedKeyWithWrongPINOnLoggedInToken: the base token is logged
// in with the right PIN, so the token itself would hand out a preloaded key
// whose URI carries another PIN. keyd says at start that the PIN is wrong
// and serves the key as Unavailable; the right PIN (or none) works.
func TestKeydPreloadedKeyWithWrongPINOnLoggedInToken(t *testing.T) {
	tok := factoryKeyToken(t, "edgev2-pinconflict")
	extra := fmt.Sprintf("\n[preloaded_keys]\nwrong = \"pkcs11:token=%[1]s;object=factory-key?pin-value=not-the-pin-5150\"\nright = \"pkcs11:token=%[1]s;object=factory-key?pin-value=%[2]s\"\nbare = \"pkcs11:token=%[1]s;object=factory-key\"\n", tok.Label, tok.PIN)
	k := startKeydWithToken(t, tok, extra)
	ctx := ctxT(t)
	_, err := k.keys.Key("wrong").Sign(ctx, keys.MechECDSASHA256, []byte("x"))
	if !fault.Is(err, fault.Unavailable) || !strings.Contains(err.Error(), "PIN") || !strings.Contains(err.Error(), "wrong") {
		t.Fatalf("Sign with a preloaded key whose URI has a wrong PIN = %v; want Unavailable saying the PIN is wrong", err)
	}
	if strings.Contains(err.Error(), "not-the-pin-5150") || strings.Contains(k.svc.Output(), "not-the-pin-5150") {
		t.Fatalf("the wrong PIN leaked: %v\n%s", err, k.svc.Output())
	}
	if !strings.Contains(k.svc.Output(), "differs from the PIN") {
		t.Fatalf("keyd did not say at start that the PIN conflicts:\n%s", k.svc.Output())
	}
	for _, id := range []string{"right", "bare"} {
		if _, err := k.keys.Key(id).Sign(ctx, keys.MechECDSASHA256, []byte("x")); err != nil {
			t.Errorf("Sign with preloaded key %q: %v", id, err)
		}
	}
}
