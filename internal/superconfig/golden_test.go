package superconfig

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	certsconfig "github.com/edgev2/edgev2/certs/config"
	idconfig "github.com/edgev2/edgev2/identity/config"
	"github.com/edgev2/edgev2/internal/credential"
	"github.com/edgev2/edgev2/keys"
	keysconfig "github.com/edgev2/edgev2/keys/config"
	"github.com/edgev2/edgev2/keys/pkcs11uri"
	rtconfig "github.com/edgev2/edgev2/modrt/config"
	"github.com/edgev2/edgev2/modrt/modspec"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/apply")

// goldenPath is the super-config path the scenarios are compiled as, so the
// files' header comments do not depend on the checkout.
const goldenPath = "/etc/edgev2/config.toml"

// goldenName is the golden file a compiled file is compared with.
func goldenName(path string) string {
	switch path {
	case RulesPath:
		return "principals.rules"
	case ServicesRulesPath:
		return "services.rules"
	}
	if filepath.Base(path) == "50-credentials.conf" { // one per unit
		return strings.TrimSuffix(filepath.Base(filepath.Dir(path)), ".service.d") + ".credentials.conf"
	}
	return filepath.Base(path)
}

func scenarios(t *testing.T) []string {
	t.Helper()
	dirs, err := filepath.Glob("testdata/apply/*/config.toml")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no scenarios in testdata/apply: %v", err)
	}
	for i, d := range dirs {
		dirs[i] = filepath.Dir(d)
	}
	return dirs
}

// compileScenario parses and compiles one scenario's config.toml.
func compileScenario(t *testing.T, dir string) *Output {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	return compile(t, goldenPath, data)
}

// compile parses data as the super-config at path and compiles it.
func compile(t *testing.T, path string, data []byte) *Output {
	t.Helper()
	c, err := Parse(path, data)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	out, err := Compile(c)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return out
}

// manifest lists each file's install path, owner, mode and unit.
func manifest(out *Output) []byte {
	var b bytes.Buffer
	for _, f := range out.Files {
		fmt.Fprintf(&b, "%s owner=%s mode=%#o service=%q\n", f.Path, f.Owner, f.Mode, f.Service)
	}
	for _, o := range out.Obsolete {
		fmt.Fprintf(&b, "obsolete %s\n", o)
	}
	fmt.Fprintf(&b, "seal %s\n", out.Seal)
	for _, cr := range out.Credentials {
		fmt.Fprintf(&b, "credential %s unit=%s from=%s bytes=%d\n", cr.Name, cr.Unit, cr.From, len(cr.Data))
	}
	return b.Bytes()
}

func TestCompileMatchesGoldenFilesPerScenario(t *testing.T) {
	for _, dir := range scenarios(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			out := compileScenario(t, dir)
			want := map[string][]byte{"files.txt": manifest(out)}
			for _, f := range out.Files {
				want[goldenName(f.Path)] = f.Data
			}
			if *update {
				old, _ := filepath.Glob(filepath.Join(dir, "*"))
				for _, o := range old {
					if filepath.Base(o) != "config.toml" {
						os.Remove(o)
					}
				}
				for name, data := range want {
					if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			for name, data := range want {
				golden, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil {
					t.Errorf("%s: %v (run go test -update)", name, err)
					continue
				}
				if !bytes.Equal(golden, data) {
					t.Errorf("%s differs from the golden file (run go test -update and review the diff)\n--- got:\n%s\n--- want:\n%s", name, data, golden)
				}
			}
			extra, _ := filepath.Glob(filepath.Join(dir, "*"))
			for _, e := range extra {
				if n := filepath.Base(e); n != "config.toml" && want[n] == nil {
					t.Errorf("golden file %s is no longer produced", n)
				}
			}
		})
	}
}

// parseWithDaemon parses a compiled file with the daemon's own parser.
func parseWithDaemon(f File) error {
	var err error
	switch f.Path {
	case "/etc/edgev2/keyd.toml":
		_, err = keysconfig.Parse(f.Path, f.Data)
	case "/etc/edgev2/certd.toml":
		_, err = certsconfig.Parse(f.Path, f.Data)
	case "/etc/edgev2/identityd.toml":
		_, err = idconfig.ParseConfig(f.Path, f.Data)
	case "/etc/edgev2/modrtd.toml":
		_, err = rtconfig.ParseConfig(f.Path, f.Data)
	}
	return err
}

func TestCompiledConfigsAreAcceptedByEachDaemonsParser(t *testing.T) {
	for _, dir := range scenarios(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			out := compileScenario(t, dir)
			n := 0
			for _, f := range out.Files {
				if !strings.HasSuffix(f.Path, "d.toml") {
					continue
				}
				n++
				if err := parseWithDaemon(f); err != nil {
					t.Errorf("%s refused by its daemon's parser: %v\n%s", f.Path, err, f.Data)
				}
			}
			if n != 4 {
				t.Fatalf("compiled %d service configs, want 4", n)
			}
		})
	}
}

func TestCompiledFilesHaveServiceOwnersModesAndUnits(t *testing.T) {
	want := map[string]File{
		"/etc/edgev2/keyd.toml":      {Owner: "edgekeys", Mode: 0o600, Service: "edgev2-keyd.service"},
		"/etc/edgev2/certd.toml":     {Owner: "edgecerts", Mode: 0o600, Service: "edgev2-certd.service"},
		"/etc/edgev2/identityd.toml": {Owner: "edgeid", Mode: 0o600, Service: "edgev2-identityd.service"},
		"/etc/edgev2/modrtd.toml":    {Owner: "root", Mode: 0o600, Service: "edgev2-modrtd.service"},
		RulesPath:                    {Owner: "root", Mode: 0o644, Service: ""},
		ServicesRulesPath:            {Owner: "root", Mode: 0o644, Service: ""},
	}
	out := compileScenario(t, "testdata/apply/manual-sas")
	seen := map[string]bool{}
	for _, f := range out.Files {
		seen[f.Path] = true
		if !filepath.IsAbs(f.Path) {
			t.Errorf("%s: not an absolute path", f.Path)
		}
		w, ok := want[f.Path]
		if !ok {
			// keyd's credentials drop-in (the inline SAS key): root's,
			// readable like any unit file, and a daemon-reload.
			w = File{Owner: "root", Mode: 0o644, Service: "edgev2-keyd.service"}
			if f.Path != CredentialsDropIn("edgev2-keyd.service") || !f.DaemonReload {
				t.Errorf("unexpected file %s", f.Path)
			}
		}
		if f.Owner != w.Owner || f.Mode != w.Mode || f.Service != w.Service {
			t.Errorf("%s: owner %s mode %#o service %q; want %s %#o %q", f.Path, f.Owner, f.Mode, f.Service, w.Owner, w.Mode, w.Service)
		}
	}
	for p := range want {
		if !seen[p] {
			t.Errorf("%s not compiled", p)
		}
	}
}

func TestSecretsLeaveEveryCompiledFileForCredentials(t *testing.T) {
	cases := []struct {
		scenario string
		secrets  []string // as the super-config holds them
		creds    []string // credential names that must hold them
	}{
		{"manual-sas", []string{"c2VjcmV0LWRldmljZS1rZXktYnl0ZXMtMDEyMzQ1Njc=", "secret-device-key-bytes-01234567"}, []string{"edgev2.keyd.device-id"}},
		{"dps-symmetric", []string{"ZHBzLWluZGl2aWR1YWwtZW5yb2xsbWVudC1rZXk=", "dps-individual-enrollment-key"}, []string{"edgev2.keyd.device-id"}},
		{"manual-connection-string", []string{"c2VjcmV0LWRldmljZS1rZXktYnl0ZXMtMDEyMzQ1Njc=", "SharedAccessKey"}, []string{"edgev2.identityd.connection-string"}},
		{"secrets-sealed", []string{"4711-base-pin", "other-token-pin", "est-basic-password", "c2VhbGVkLWRwcy1lbnJvbGxtZW50LWtleQ==", "sealed-dps-enrollment-key", "registry-password-42"},
			[]string{"edgev2.keyd.pin", "edgev2.keyd.pin-2", "edgev2.certd.est-password", "edgev2.keyd.device-id", "edgev2.modrtd.telemetry.registry-password"}},
	}
	for _, tc := range cases {
		t.Run(tc.scenario, func(t *testing.T) {
			out := compileScenario(t, "testdata/apply/"+tc.scenario)
			for _, f := range out.Files {
				for _, s := range tc.secrets {
					if bytes.Contains(f.Data, []byte(s)) {
						t.Errorf("the secret %q is in %s", s, f.Path)
					}
				}
			}
			got := map[string]Credential{}
			for _, cr := range out.Credentials {
				got[cr.Name] = cr
				if credential.Unit(cr.Name) != cr.Unit {
					t.Errorf("credential %s is loaded by %s, want %s", cr.Name, cr.Unit, credential.Unit(cr.Name))
				}
			}
			for _, name := range tc.creds {
				if _, ok := got[name]; !ok {
					t.Errorf("no credential %s; have %v", name, out.Credentials)
				}
			}
			if len(got) != len(tc.creds) {
				t.Errorf("%d credentials, want %d: %v", len(got), len(tc.creds), out.Credentials)
			}
		})
	}
}

// credentialsDir puts out's credentials where systemd would, as
// LoadCredentialEncrypted= does, for the daemons' readers.
func credentialsDir(t *testing.T, out *Output) {
	t.Helper()
	dir := t.TempDir()
	for _, cr := range out.Credentials {
		if err := os.WriteFile(filepath.Join(dir, cr.Name), cr.Data, 0o400); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("CREDENTIALS_DIRECTORY", dir)
}

func TestSealedSecretsReachEachDaemonThroughItsCredentials(t *testing.T) {
	out := compileScenario(t, "testdata/apply/secrets-sealed")
	credentialsDir(t, out)
	files := map[string][]byte{}
	for _, f := range out.Files {
		files[f.Path] = f.Data
	}
	kc, err := keysconfig.Parse("keyd.toml", files["/etc/edgev2/keyd.toml"])
	if err != nil {
		t.Fatal(err)
	}
	pins := map[string]string{"base slot": kc.PKCS11BaseSlot, "other-token-key": kc.PreloadedKeys["other-token-key"], "same-token-key": kc.PreloadedKeys["same-token-key"]}
	want := map[string]string{"base slot": "4711-base-pin", "other-token-key": "other-token-pin", "same-token-key": "4711-base-pin"}
	for what, uri := range pins {
		u, err := pkcs11uri.Parse(uri)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if !strings.Contains(u.PINSource, "credential:edgev2.keyd.pin") || u.InlinePIN() != "" {
			t.Errorf("%s: pin-source %q, inline pin set %v; want a credential", what, u.PINSource, u.InlinePIN() != "")
		}
		pin, err := u.PIN()
		if err != nil || pin != want[what] {
			t.Errorf("%s: PIN from the credential: %v (right value: %v)", what, err, pin == want[what])
		}
	}
	if _, err := keys.LoadKeyCredential("device-id", strings.TrimPrefix(kc.PreloadedKeys["device-id"], "credential:")); err != nil {
		t.Errorf("keyd cannot load the sealed DPS key: %v", err)
	}
	cc, err := certsconfig.Parse("certd.toml", files["/etc/edgev2/certd.toml"])
	if err != nil {
		t.Fatal(err)
	}
	if cc.EST.Password != "" || cc.EST.PasswordCredential != "edgev2.certd.est-password" {
		t.Fatalf("certd.toml [est]: password set %v, password_credential %q", cc.EST.Password != "", cc.EST.PasswordCredential)
	}
	if err := cc.ReadCredentials(); err != nil || cc.EST.Password != "est-basic-password" {
		t.Fatalf("certd reads its EST password: %v (right value: %v)", err, cc.EST.Password == "est-basic-password")
	}
	mc, err := rtconfig.ParseConfig("modrtd.toml", files["/etc/edgev2/modrtd.toml"])
	if err != nil {
		t.Fatal(err)
	}
	if err := mc.ReadCredentials(); err != nil {
		t.Fatal(err)
	}
	s, err := modspec.ParseSpec([]byte(mc.Modules[0].Spec))
	if err != nil || s.Config.Settings.Auth == nil || s.Config.Settings.Auth.Password != "registry-password-42" || s.Config.Settings.Auth.Username != "edge" ||
		s.Config.Settings.Image != "registry.example.net/telemetry:2" {
		t.Fatalf("modrtd's spec with its sealed registry password: %v (auth %v)", err, s.Config.Settings.Auth)
	}
	// Each unit loads exactly its own credentials.
	for unit, names := range map[string][]string{"edgev2-keyd.service": {"edgev2.keyd.device-id", "edgev2.keyd.pin", "edgev2.keyd.pin-2"}, "edgev2-certd.service": {"edgev2.certd.est-password"},
		"edgev2-modrtd.service": {"edgev2.modrtd.telemetry.registry-password"}} {
		d := string(files[CredentialsDropIn(unit)])
		if got := strings.Count(d, "LoadCredentialEncrypted="); got != len(names) {
			t.Errorf("%s drop-in loads %d credentials, want %d:\n%s", unit, got, len(names), d)
		}
		for _, n := range names {
			if !strings.Contains(d, "\n"+credential.UnitLine(n)+"\n") {
				t.Errorf("%s drop-in lacks %s:\n%s", unit, credential.UnitLine(n), d)
			}
		}
	}
}

func TestSealNoneKeepsCredentialsInTheClearStoreWithLoadCredential(t *testing.T) {
	data, err := os.ReadFile("testdata/apply/secrets-sealed/config.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range compile(t, goldenPath, append(data, []byte("\n[secrets]\nseal = \"none\"\n")...)).Files {
		if f.Path == CredentialsDropIn("edgev2-certd.service") {
			if want := "LoadCredential=edgev2.certd.est-password:/etc/credstore/edgev2.certd.est-password\n"; !strings.Contains(string(f.Data), want) || strings.Contains(string(f.Data), "Encrypted") {
				t.Fatalf("drop-in with seal none:\n%s\nwant %s", f.Data, want)
			}
			return
		}
	}
	t.Fatal("no certd drop-in")
}

func TestUnknownSealIsRefusedNamingTheSetting(t *testing.T) {
	_, err := Parse("config.toml", []byte("[secrets]\nseal = \"tpm\"\n"))
	if err == nil || !strings.Contains(err.Error(), "secrets.seal") || !strings.Contains(err.Error(), "tpm2+host") {
		t.Fatalf("Parse: %v; want secrets.seal refused with the choices", err)
	}
}

func TestExampleConfigParsesAndCompiles(t *testing.T) {
	const example = "../../packaging/config.toml.example"
	data, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range compile(t, example, data).Files {
		if err := parseWithDaemon(f); err != nil {
			t.Errorf("%s refused: %v", f.Path, err)
		}
	}
}

func TestInlineKeysLoadInKeydWithTheUsageIdentitydNeeds(t *testing.T) {
	cases := []struct {
		scenario, id string
		usage        keys.Usage
	}{
		{"manual-sas", idDevice, keys.UsageSign},
		{"dps-symmetric", idDevice, keys.UsageSign},
		{"dps-group-key-inline", idGroupKey, keys.UsageDerive},
	}
	for _, tc := range cases {
		t.Run(tc.scenario, func(t *testing.T) {
			out := compileScenario(t, "testdata/apply/"+tc.scenario)
			credentialsDir(t, out)
			h, err := keys.LoadKeyCredential(tc.id, "edgev2.keyd."+tc.id)
			if err != nil {
				t.Fatalf("keyd cannot load the compiled key credential: %v", err)
			}
			if info := h.Info(); info.Type != keys.Symmetric || info.Usage != tc.usage {
				t.Fatalf("loaded as %s usage %s, want symmetric usage %s", info.Type, info.Usage, tc.usage)
			}
		})
	}
}

func TestModuleSpecsReachModrtdUnchanged(t *testing.T) {
	data, err := os.ReadFile("testdata/apply/agent-and-modules/config.toml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(goldenPath, data)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range out.Files {
		if f.Path != "/etc/edgev2/modrtd.toml" {
			continue
		}
		mc, err := rtconfig.ParseConfig(f.Path, f.Data)
		if err != nil {
			t.Fatal(err)
		}
		want := append([]Module{{Name: "edgeAgent", Spec: c.Agent.Spec}}, c.Modules...)
		if len(mc.Modules) != len(want) {
			t.Fatalf("modrtd keeps %d modules, want %d", len(mc.Modules), len(want))
		}
		for i, m := range mc.Modules {
			if m.Name != want[i].Name || m.Spec != want[i].Spec {
				t.Errorf("module %d: %q %q, want %q %q", i, m.Name, m.Spec, want[i].Name, want[i].Spec)
			}
		}
		return
	}
	t.Fatal("no modrtd.toml compiled")
}
