package certs_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const mod = "github.com/edgev2/edgev2/"

// deps lists what pkg links (go list -deps), without the test files.
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", mod+pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

// TestPackageGraphIsOneWay: the domain links no D-Bus, the leaf packages
// (api, config) and the client link no domain, and the other services'
// daemons reach certd only through the client.
func TestPackageGraphIsOneWay(t *testing.T) {
	const godbus = "github.com/godbus/dbus/v5"
	domainSide := []string{mod + "certs", mod + "certs/adapter", mod + "certs/est", mod + "certs/revocation", mod + "certs/config"}
	rules := []struct {
		pkg       string
		forbidden []string
	}{
		{"certs", []string{godbus, mod + "certs/adapter", mod + "certs/client"}},
		{"certs/api", append([]string{godbus}, domainSide...)},
		{"certs/config", []string{godbus, mod + "certs", mod + "certs/adapter", mod + "certs/est"}},
		{"certs/revocation", []string{godbus, mod + "certs", mod + "certs/adapter"}},
		{"certs/client", domainSide},
		{"cmd/edgev2-identityd", domainSide},
		{"cmd/edgev2-modrtd", domainSide},
	}
	for _, r := range rules {
		d := deps(t, r.pkg)
		for _, f := range r.forbidden {
			if slices.Contains(d, f) {
				t.Errorf("%s links %s", r.pkg, f)
			}
		}
	}
}
