package packaging

import (
	"bufio"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/edgev2/edgev2/internal/testenv"
)

// iniFile is a systemd unit or D-Bus activation file: section -> key ->
// values (a key may repeat).
type iniFile map[string]map[string][]string

// parseINI reads the [Section] key=value format of unit and activation files.
func parseINI(t *testing.T, path string) iniFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ini, section := iniFile{}, ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			ini[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: cannot parse line %q", path, line)
			}
			ini[section][strings.TrimSpace(k)] = append(ini[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return ini
}

// one returns the single value of key in section, or "".
func (f iniFile) one(section, key string) string {
	if v := f[section][key]; len(v) > 0 {
		return v[len(v)-1]
	}
	return ""
}

// busPolicy is the part of a bus policy file that says who may own a name.
type busPolicy struct {
	Policies []struct {
		User    string `xml:"user,attr"`
		Context string `xml:"context,attr"`
		Allow   []struct {
			Own string `xml:"own,attr"`
		} `xml:"allow"`
	} `xml:"policy"`
}

// TestActivationFilesUnitsAndBusPoliciesAgree proves that for every bus name
// the D-Bus activation file, the systemd unit it names and the bus policy
// agree: the unit exists, is Type=dbus with that BusName, runs the installed
// daemon under the activation file's user, and the bus policy lets exactly
// that user own the name. A mismatch would make activation or the start of
// the service fail only on a real gateway.
func TestActivationFilesUnitsAndBusPoliciesAgree(t *testing.T) {
	repo := testenv.RepoRoot()
	for _, name := range busNames {
		t.Run(name, func(t *testing.T) {
			act := parseINI(t, filepath.Join(repo, "packaging/dbus", name+".service"))
			if got := act.one("D-BUS Service", "Name"); got != name {
				t.Errorf("activation file Name=%q, want %q", got, name)
			}
			unitName := act.one("D-BUS Service", "SystemdService")
			if unitName == "" {
				t.Fatalf("activation file has no SystemdService=; the bus would start the daemon outside systemd")
			}
			unit := parseINI(t, filepath.Join(repo, "packaging/systemd", unitName))
			if got := unit.one("Service", "Type"); got != "dbus" {
				t.Errorf("%s: Type=%q, want dbus", unitName, got)
			}
			if got := unit.one("Service", "BusName"); got != name {
				t.Errorf("%s: BusName=%q, want %q", unitName, got, name)
			}
			exec := strings.Fields(unit.one("Service", "ExecStart"))
			daemon := strings.TrimSuffix(unitName, ".service")
			if len(exec) == 0 || exec[0] != "/usr/libexec/edgev2/"+daemon {
				t.Errorf("%s: ExecStart=%v, want /usr/libexec/edgev2/%s (where the package installs it)", unitName, exec, daemon)
			}
			if _, err := os.Stat(filepath.Join(repo, "cmd", daemon)); err != nil {
				t.Errorf("%s runs %s, but there is no cmd/%s to build it from", unitName, daemon, daemon)
			}
			user := unit.one("Service", "User")
			if user == "" {
				user = "root"
			}
			if got := act.one("D-BUS Service", "User"); got != user {
				t.Errorf("activation file User=%q, but %s runs as %q", got, unitName, user)
			}
			if user != "root" && !contains(serviceUsers, user) {
				t.Errorf("%s runs as %q, which the sysusers file does not create", unitName, user)
			}
			if len(unit["Install"]["WantedBy"]) == 0 {
				t.Errorf("%s has no [Install] WantedBy=; systemctl enable would do nothing", unitName)
			}

			data, err := os.ReadFile(filepath.Join(repo, "policy", name+".conf"))
			if err != nil {
				t.Fatal(err)
			}
			var pol busPolicy
			if err := xml.Unmarshal(data, &pol); err != nil {
				t.Fatalf("bus policy %s.conf: %v", name, err)
			}
			var owners []string
			for _, p := range pol.Policies {
				for _, a := range p.Allow {
					if a.Own == name {
						owners = append(owners, p.User+p.Context)
					}
				}
			}
			if len(owners) != 1 || owners[0] != user {
				t.Errorf("bus policy lets %v own %s, want only user %q", owners, name, user)
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// makeVar is the value make gives variable name in makefile (run in repo),
// with vars set on the command line, as make itself expands it.
func makeVar(t *testing.T, repo, makefile, name string, vars ...string) string {
	t.Helper()
	if _, err := exec.LookPath("make"); err != nil {
		testenv.Missing(t, "make", "reading the makefiles needs it (package make)")
	}
	args := append([]string{"-s", "--no-print-directory", "-f", makefile,
		"--eval", "edgev2-print-%: ; @echo '$($*)'"}, vars...)
	cmd := exec.Command("make", append(args, "edgev2-print-"+name)...)
	cmd.Dir = repo
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make -f %s (printing %s): %v\n%s", makefile, name, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestBenchLinksTheDaemonsAsThePackageDoes proves that `make bench` measures
// daemons linked as the amd64 package links them (PIE, external link, full
// RELRO, packed relative relocations): resident memory, one of the bench's
// goals, depends on it (keyd on SoftHSM: 14.4 MiB so, 15.2 without packing).
func TestBenchLinksTheDaemonsAsThePackageDoes(t *testing.T) {
	repo := testenv.RepoRoot()
	rulesFile, err := os.ReadFile(filepath.Join(repo, "packaging/debian/rules"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(rulesFile), "$(GO) build -trimpath -buildmode=pie ") {
		t.Fatalf("packaging/debian/rules no longer builds with -buildmode=pie: update BENCH_GOFLAGS in the Makefile and this test")
	}
	ldflags := strings.Fields(makeVar(t, repo, "packaging/debian/rules", "GO_LDFLAGS", "DEB_HOST_ARCH=amd64"))
	var ext string
	linkExternal := false
	for _, f := range ldflags {
		if v, ok := strings.CutPrefix(f, "-extldflags="); ok {
			ext = v
		}
		linkExternal = linkExternal || f == "-linkmode=external"
	}
	if !linkExternal || !strings.Contains(ext, "pack-relative-relocs") {
		t.Fatalf("debian/rules GO_LDFLAGS on amd64 = %q: want -linkmode=external and -extldflags packing relative relocations", ldflags)
	}
	if got := makeVar(t, repo, "Makefile", "BENCH_CGO_LDFLAGS"); got != ext {
		t.Errorf("Makefile BENCH_CGO_LDFLAGS = %q, but the amd64 package links with -extldflags=%q", got, ext)
	}
	goflags := strings.Fields(makeVar(t, repo, "Makefile", "BENCH_GOFLAGS"))
	for _, want := range []string{"-buildmode=pie", "-ldflags=-linkmode=external"} {
		if !slices.Contains(goflags, want) {
			t.Errorf("Makefile BENCH_GOFLAGS = %q, want %s as the package builds", goflags, want)
		}
	}
}
