package superconfig

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgev2/edgev2/certs"
	"github.com/edgev2/edgev2/identity"
	"github.com/edgev2/edgev2/keys"
	"github.com/edgev2/edgev2/modrt"
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
	c, err := Parse(goldenPath, data)
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
		_, err = keys.ParseConfig(f.Path, f.Data)
	case "/etc/edgev2/certd.toml":
		_, err = certs.ParseConfig(f.Path, f.Data)
	case "/etc/edgev2/identityd.toml":
		_, err = identity.ParseConfig(f.Path, f.Data)
	case "/etc/edgev2/modrtd.toml":
		_, err = modrt.ParseConfig(f.Path, f.Data)
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
			// The inline SAS key, for keyd to preload.
			w = File{Owner: "edgekeys", Mode: 0o600, Service: "edgev2-keyd.service"}
			if f.Path != secretKeyPath(idDevice) {
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

func TestInlineSecretsStayInTheServiceFilesThatNeedThem(t *testing.T) {
	secrets := map[string]string{
		"manual-sas":               "c2VjcmV0LWRldmljZS1rZXktYnl0ZXMtMDEyMzQ1Njc=",
		"dps-symmetric":            "ZHBzLWluZGl2aWR1YWwtZW5yb2xsbWVudC1rZXk=",
		"manual-connection-string": "c2VjcmV0LWRldmljZS1rZXktYnl0ZXMtMDEyMzQ1Njc=",
	}
	for name, secret := range secrets {
		out := compileScenario(t, "testdata/apply/"+name)
		for _, f := range out.Files {
			has := bytes.Contains(f.Data, []byte(secret))
			if has && f.Path != "/etc/edgev2/identityd.toml" {
				t.Errorf("%s: the base64 secret is in %s", name, f.Path)
			}
			if has && f.Mode != 0o600 {
				t.Errorf("%s: secret in %s with mode %#o", name, f.Path, f.Mode)
			}
		}
	}
}

func TestExampleConfigParsesAndCompiles(t *testing.T) {
	const example = "../../packaging/config.toml.example"
	data, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(example, data)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	out, err := Compile(c)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	for _, f := range out.Files {
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
			var found bool
			for _, f := range out.Files {
				if f.Path != secretKeyPath(tc.id) {
					continue
				}
				found = true
				path := filepath.Join(t.TempDir(), "key")
				if err := os.WriteFile(path, f.Data, 0o600); err != nil {
					t.Fatal(err)
				}
				h, err := keys.LoadKeyFile(tc.id, path)
				if err != nil {
					t.Fatalf("keyd cannot load the compiled key file: %v", err)
				}
				if info := h.Info(); info.Type != keys.Symmetric || info.Usage != tc.usage {
					t.Fatalf("loaded as %s usage %s, want symmetric usage %s", info.Type, info.Usage, tc.usage)
				}
			}
			if !found {
				t.Fatalf("no %s compiled", secretKeyPath(tc.id))
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
		mc, err := modrt.ParseConfig(f.Path, f.Data)
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
