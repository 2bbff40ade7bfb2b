package adapter_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestIdentityPackagesDependOneWay: the domain knows no D-Bus; the wire
// contract, the client and the config file know no domain; the config
// file knows no D-Bus either (edgectl and superconfig read it).
func TestIdentityPackagesDependOneWay(t *testing.T) {
	const (
		mod    = "github.com/edgev2/edgev2/"
		domain = mod + "identity"
		godbus = "github.com/godbus/dbus/v5"
	)
	for pkg, banned := range map[string][]string{
		domain:                    {godbus},
		mod + "identity/config":   {godbus, domain},
		mod + "identity/api":      {domain},
		mod + "identity/client":   {domain},
		mod + "cmd/edgectl":       {domain},
		mod + "cmd/edgev2-modrtd": {domain},
	} {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		deps := map[string]bool{}
		for _, d := range strings.Fields(string(out)) {
			deps[d] = true
		}
		for _, b := range banned {
			if deps[b] {
				t.Errorf("%s depends on %s", pkg, b)
			}
		}
	}
}
