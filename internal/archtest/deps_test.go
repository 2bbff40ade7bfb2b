// Package archtest checks the package graph's one-way rules
// (docs/ARCHITECTURE.md) with `go list -deps`: what a package links, not
// what its files happen to import, so a rule cannot be dodged through an
// intermediate package.
package archtest

import (
	"bufio"
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
)

const mod = "github.com/edgev2/edgev2/"

var services = []string{"keys", "certs", "identity", "modrt"}

// daemons maps each service daemon to the service it serves.
var daemons = map[string]string{
	mod + "cmd/edgev2-keyd":      "keys",
	mod + "cmd/edgev2-certd":     "certs",
	mod + "cmd/edgev2-identityd": "identity",
	mod + "cmd/edgev2-modrtd":    "modrt",
}

// graph maps each package of the module (tests excluded) to everything it
// links, the standard library left out.
func graph(t *testing.T) map[string]map[string]bool {
	t.Helper()
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.Command(goBin, "list", "-f", "{{.ImportPath}} {{join .Deps \" \"}}", mod+"...")
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	g := map[string]map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		deps := map[string]bool{}
		for _, d := range f[1:] {
			if strings.Contains(strings.SplitN(d, "/", 2)[0], ".") {
				deps[d] = true
			}
		}
		g[f[0]] = deps
	}
	if len(g) < 20 {
		t.Fatalf("go list found %d packages; expected the whole module", len(g))
	}
	return g
}

// kind says what role a package of the module plays.
func kind(pkg string) (svc, role string) {
	rel := strings.TrimPrefix(pkg, mod)
	parts := strings.Split(rel, "/")
	for _, s := range services {
		if parts[0] != s {
			continue
		}
		if len(parts) == 1 {
			return s, "domain"
		}
		switch parts[1] {
		case "api", "config", "client", "adapter":
			return s, parts[1]
		}
		return s, "part" // a service's own subpackage (engine, protocol, store …)
	}
	return "", ""
}

func matching(deps map[string]bool, pred func(string) bool) []string {
	var out []string
	for d := range deps {
		if pred(d) {
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return out
}

func isGodbus(d string) bool     { return strings.HasPrefix(d, "github.com/godbus/") }
func isContainerd(d string) bool { return strings.HasPrefix(d, "github.com/containerd/") }
func isGoTPM(d string) bool      { return strings.HasPrefix(d, "github.com/google/go-tpm") }
func isPKCS11(d string) bool     { return strings.HasPrefix(d, "github.com/miekg/pkcs11") }
func isModule(d string) bool     { return strings.HasPrefix(d, mod) }
func isDomain(d string) bool     { _, r := kind(d); return r == "domain" }

// isServiceCode: a service's domain package or its D-Bus adapter. A service's
// other subpackages (protocol clients, parsers, engines) are not counted:
// they are libraries, governed by the rules on what links them.
func isServiceCode(d string) bool {
	_, r := kind(d)
	return r == "domain" || r == "adapter"
}

// TestPackageGraphRules is the dependency rule list of docs/ARCHITECTURE.md.
// Each rule names the packages it governs; a rule that governs nothing fails
// too, so a rename cannot switch a rule off silently.
func TestPackageGraphRules(t *testing.T) {
	g := graph(t)
	type rule struct {
		name    string
		governs func(pkg string) bool
		// forbidden returns the offending dependencies of pkg.
		forbidden func(pkg string, deps map[string]bool) []string
	}
	svcOf := func(p string) string { s, _ := kind(p); return s }
	rules := []rule{
		{
			name:    "a service's domain code links no D-Bus library (the adapter does)",
			governs: func(p string) bool { _, r := kind(p); return r == "domain" },
			forbidden: func(p string, deps map[string]bool) []string {
				return matching(deps, isGodbus)
			},
		},
		{
			// godbus is allowed: the a{sv} codecs of the wire structs use its Variant.
			name:    "<svc>/api links nothing of the module but fault and internal/label, and no containerd or TPM library",
			governs: func(p string) bool { _, r := kind(p); return r == "api" },
			forbidden: func(p string, deps map[string]bool) []string {
				return matching(deps, func(d string) bool {
					return isModule(d) && d != mod+"fault" && d != mod+"internal/label" || isContainerd(d) || isGoTPM(d) || isPKCS11(d)
				})
			},
		},
		{
			name:    "<svc>/config is a leaf: no service code, no D-Bus, containerd or TPM library",
			governs: func(p string) bool { _, r := kind(p); return r == "config" },
			forbidden: func(p string, deps map[string]bool) []string {
				return matching(deps, func(d string) bool {
					return isServiceCode(d) || isGodbus(d) || isContainerd(d) || isGoTPM(d) || isPKCS11(d)
				})
			},
		},
		{
			name:    "<svc>/client links no service's domain code or config, and no containerd, TPM or PKCS#11 library",
			governs: func(p string) bool { _, r := kind(p); return r == "client" },
			forbidden: func(p string, deps map[string]bool) []string {
				return matching(deps, func(d string) bool {
					_, r := kind(d)
					return isServiceCode(d) || r == "config" || isContainerd(d) || isGoTPM(d) || isPKCS11(d)
				})
			},
		},
		{
			name:    "a daemon links no other service's domain code or config (it talks to it through its client)",
			governs: func(p string) bool { return daemons[p] != "" },
			forbidden: func(p string, deps map[string]bool) []string {
				self := daemons[p]
				return matching(deps, func(d string) bool {
					_, r := kind(d)
					return (isServiceCode(d) || r == "config") && svcOf(d) != self
				})
			},
		},
		{
			name:    "edgectl and the super-config link no service's domain code (they are clients, and read configs through <svc>/config)",
			governs: func(p string) bool { return p == mod+"cmd/edgectl" || p == mod+"internal/superconfig" },
			forbidden: func(p string, deps map[string]bool) []string {
				return matching(deps, isServiceCode)
			},
		},
		{
			name:    "edgectl and the super-config link no containerd",
			governs: func(p string) bool { return p == mod+"cmd/edgectl" || p == mod+"internal/superconfig" },
			forbidden: func(p string, deps map[string]bool) []string {
				return matching(deps, isContainerd)
			},
		},
		{
			name:    "the module runtime daemon links no TPM library",
			governs: func(p string) bool { return p == mod+"cmd/edgev2-modrtd" },
			forbidden: func(p string, deps map[string]bool) []string {
				return matching(deps, isGoTPM)
			},
		},
	}
	for _, r := range rules {
		t.Run(r.name, func(t *testing.T) {
			var pkgs []string
			for p := range g {
				if r.governs(p) {
					pkgs = append(pkgs, p)
				}
			}
			if len(pkgs) == 0 {
				t.Fatal("no package governed: the rule or the package names changed")
			}
			sort.Strings(pkgs)
			for _, p := range pkgs {
				bad := r.forbidden(p, g[p])
				allowed := exceptions[p]
				var left []string
				for _, b := range bad {
					if !allowed[b] {
						left = append(left, b)
					}
				}
				if len(left) > 5 {
					left = append(left[:5], fmt.Sprintf("… (%d in all)", len(left)))
				}
				if len(left) > 0 {
					t.Errorf("%s links %s", p, strings.Join(left, ", "))
				}
			}
		})
	}
	// An exception that no longer applies is removed, so the list only shrinks.
	for p, deps := range exceptions {
		for d := range deps {
			if !g[p][d] {
				t.Errorf("exception %s → %s no longer needed: remove it from exceptions", p, d)
			}
		}
	}
}

// exceptions are the known gaps, each with the issue that closes it. Keep it
// short; a package listed here still fails on any other forbidden link.
var exceptions = map[string]map[string]bool{}
