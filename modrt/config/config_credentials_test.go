package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgev2/edgev2/modrt/modspec"
)

func TestSetRegistryPasswordOnlyTouchesTheAuthPassword(t *testing.T) {
	cases := []struct {
		name, spec, pw, want string
	}{
		{"added", `{"name":"m","type":"docker","config":{"settings":{"image":"r/i:1","auth":{"username":"u"}}}}`, "pw",
			`{"config":{"settings":{"auth":{"password":"pw","username":"u"},"image":"r/i:1"}},"name":"m","type":"docker"}`},
		{"removed", `{"config":{"settings":{"image":"r/i:1","auth":{"username":"u","password":"old"}}}}`, "",
			`{"config":{"settings":{"auth":{"username":"u"},"image":"r/i:1"}}}`},
		{"no auth, nothing to remove", `{"config":{"settings":{"image":"r/i:1"}}}`, "",
			`{"config":{"settings":{"image":"r/i:1"}}}`},
		{"auth made", `{"config":{"settings":{"image":"r/i:1"}}}`, "p\"w",
			`{"config":{"settings":{"auth":{"password":"p\"w"},"image":"r/i:1"}}}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := modspec.SetRegistryPassword([]byte(tc.spec), tc.pw)
			if err != nil || string(got) != tc.want {
				t.Fatalf("got %s, %v\nwant %s", got, err, tc.want)
			}
		})
	}
	for _, bad := range []string{`[]`, `{"config":"x"}`, `{"config":{"settings":[1]}}`} {
		if _, err := modspec.SetRegistryPassword([]byte(bad), "pw"); err == nil || strings.Contains(err.Error(), "pw") {
			t.Errorf("modspec.SetRegistryPassword(%s): %v, want an error without the password", bad, err)
		}
	}
}

func TestRegistryPasswordCredentialIsReadIntoTheSpecAndRefusesTraversal(t *testing.T) {
	base := `homedir = "/var/lib/edgev2/modrtd"
[[modules]]
name = "m"
spec = '{"name":"m","type":"docker","config":{"settings":{"image":"r/i:1","auth":{"username":"u"}}}}'
registry_password_credential = "%s"
`
	if _, err := ParseConfig("modrtd.toml", []byte(strings.Replace(base, "%s", "../../etc/shadow", 1))); err == nil || !strings.Contains(err.Error(), "registry_password_credential") {
		t.Fatalf("a traversing credential name: %v", err)
	}
	c, err := ParseConfig("modrtd.toml", []byte(strings.Replace(base, "%s", "edgev2.modrtd.m.registry-password", 1)))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	if err := c.ReadCredentials(); err == nil || !strings.Contains(err.Error(), "edgev2-modrtd.service") {
		t.Fatalf("outside systemd: %v, want the unit line it needs", err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "edgev2.modrtd.m.registry-password"), []byte("s3cret\n"), 0o400)
	t.Setenv("CREDENTIALS_DIRECTORY", dir)
	if err := c.ReadCredentials(); err != nil {
		t.Fatal(err)
	}
	s, err := modspec.ParseSpec([]byte(c.Modules[0].Spec))
	if err != nil || s.Config.Settings.Auth.Password != "s3cret" || s.Config.Settings.Auth.Username != "u" {
		t.Fatalf("spec after ReadCredentials: %v %+v", err, s.Config.Settings.Auth)
	}
}
