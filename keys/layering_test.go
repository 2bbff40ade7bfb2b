package keys_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The Keys packages depend one way: api and the leaves below config know
// nothing of the service; the domain knows no D-Bus; the client knows the
// contract, not the domain.
func TestKeysPackagesDependOneWay(t *testing.T) {
	const mod = "github.com/edgev2/edgev2/"
	forbidden := map[string][]string{ // import path: what it must not depend on
		mod + "keys":           {"github.com/godbus/", mod + "dbus", mod + "keys/adapter", mod + "keys/client"},
		mod + "keys/api":       {mod, "github.com/godbus/"},
		mod + "keys/config":    {"github.com/godbus/", mod + "keys\n", mod + "dbus", "github.com/miekg/pkcs11"},
		mod + "keys/pkcs11uri": {"github.com/godbus/", mod + "keys\n", "github.com/miekg/pkcs11"},
		mod + "keys/tokencap":  {"github.com/godbus/", mod + "keys\n", "github.com/miekg/pkcs11"},
		mod + "keys/client":    {mod + "keys\n", mod + "keys/adapter", mod + "keys/config", "github.com/miekg/pkcs11"},
	}
	allowedInAPI := map[string]bool{mod + "keys/api": true, mod + "internal/fault": true}
	for pkg, bad := range forbidden {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		deps := string(out)
		for _, b := range bad {
			for _, d := range strings.Split(deps, "\n") {
				if pkg == mod+"keys/api" && allowedInAPI[d] {
					continue
				}
				if strings.HasPrefix(d+"\n", b) {
					t.Errorf("%s depends on %s", pkg, d)
				}
			}
		}
	}
}
