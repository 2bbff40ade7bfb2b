package superconfig

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A key id may hold '%' (key ids are any UTF-8 without control
// characters), and the credential named after it goes into a unit drop-in,
// where systemd expands '%' specifiers: the drop-in must escape them, or
// systemd loads another name (or none) and keyd cannot read its key.
// systemd-analyze verify is systemd's own unit parser.
func TestCredentialsDropInSurvivesSystemdSpecifiers(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		// Not testenv.Missing: testenv links this package (its Device compiles
		// the services' grants), so this test cannot import it.
		if os.Getenv("CI") == "true" {
			t.Fatalf("systemd-analyze is required under CI=true: %v", err)
		}
		t.Skipf("systemd-analyze missing (package systemd): %v", err)
	}
	for _, seal := range []string{SealHost, SealNone} {
		t.Run(seal, func(t *testing.T) {
			p := &plan{credentials: map[string]*Credential{}}
			for _, what := range []string{"a%h", "b%z", "c%%d"} {
				if _, err := p.addCredential("keyd", keydUnit, what, "keys."+what, []byte("secret")); err != nil {
					t.Fatal(err)
				}
			}
			files, _ := p.dropIns(seal)
			dir := t.TempDir()
			unit := filepath.Join(dir, keydUnit)
			if err := os.WriteFile(unit, []byte("[Service]\nExecStart=/bin/true\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			found := false
			for _, f := range files {
				if !strings.HasPrefix(f.Path, "/etc/systemd/system/"+keydUnit+".d/") {
					continue
				}
				found = true
				if err := os.MkdirAll(unit+".d", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(unit+".d", filepath.Base(f.Path)), f.Data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if !found {
				t.Fatal("no drop-in for keyd")
			}
			cmd := exec.Command(analyze, "verify", "--man=no", unit)
			cmd.Env = append(os.Environ(), "SYSTEMD_UNIT_PATH="+dir+":")
			out, err := cmd.CombinedOutput()
			if err != nil || len(out) != 0 {
				t.Fatalf("systemd-analyze verify of the drop-in: %v\n%s", err, out)
			}
		})
	}
}
