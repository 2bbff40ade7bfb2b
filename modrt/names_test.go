package modrt_test

import (
	"strings"
	"testing"

	"github.com/edgev2/edgev2/internal/testenv"
)

// TestModuleNamesDifferingOnlyInCaseAreOneName: a module's name is its host
// name to the other modules (modrtd's hosts file, the workload API's server
// certificates), and host names ignore case. A module "edgehub" created
// beside "edgeHub" was a second entry for the same host name — resolving
// in the other modules to whichever the resolver met first — and its own
// server certificate was valid for edgeHub. modrtd refuses the second name
// (AlreadyExists, naming the first); other names stay free.
func TestModuleNamesDifferingOnlyInCaseAreOneName(t *testing.T) {
	m := startModrtdIn(t, "edgev2-casefold")
	m.ImportImage(t, testenv.BuildImage(t, "edgev2.test/busybox:1", testenv.ImageConfig{Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"echo default"}}))
	if err := m.CreateModule("edgeHub", specCO("edgeHub", "edgev2.test/busybox:1", "never", `{}`, "sleep 600")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"edgehub", "EDGEHUB"} {
		err := m.CreateModule(name, specCO(name, "edgev2.test/busybox:1", "never", `{}`, "sleep 600"))
		if dbusErrName(err) != "org.edgev2.Error.AlreadyExists" || !strings.Contains(err.Error(), `"edgeHub"`) {
			t.Errorf("CreateModule(%s) beside edgeHub = %v; want AlreadyExists naming edgeHub", name, err)
		}
	}
	if err := m.CreateModule("edgehub2", specCO("edgehub2", "edgev2.test/busybox:1", "never", `{}`, "sleep 600")); err != nil {
		t.Errorf("CreateModule(edgehub2): %v", err)
	}
}
