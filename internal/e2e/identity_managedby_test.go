package e2e_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	bus "github.com/edgev2/edgev2/dbus"
	idapi "github.com/edgev2/edgev2/identity/api"
	"github.com/edgev2/edgev2/internal/testenv"
)

// TestScopedModuleManagerCannotBreakTheModuleList: a principal allowed to
// manage only tester-* module identities sends a managed_by identityd
// would not accept back from the hub (too long, a control character). It
// must be refused as InvalidArgs before the hub stores it: stored, it made
// every module list unreadable, so ListModuleIdentities (edgeAgent's GET
// /identities) failed for every caller, and tester-N was left in the hub
// without its keys.
func TestScopedModuleManagerCannotBreakTheModuleList(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.startIdentityd(t, "managed-by", fmt.Sprintf("[provisioning]\nsource = \"manual\"\nconnection_string = \"HostName=%s;DeviceId=manual-sas;SharedAccessKey=%s\"\n", w.hubHost, sasKey1))
	w.waitState(t, "provisioned", 20*time.Second)
	w.polkit.AddRule(t, "tester-modules", fmt.Sprintf(`polkit.addRule(function(action, subject) {
  if (action.id == "org.edgev2.identity.manage" && subject.user == %q && /^tester-/.test(action.lookup("module_id")))
    return polkit.Result.YES;
});`, testenv.OtherUser))
	create := func(id, managedBy string) (string, int) {
		out, errOut, code := testenv.RunAs(t, testenv.OtherUser, nil, "gdbus", "call", "--address", w.bus.Address, "--dest", idapi.BusName,
			"--object-path", string(idapi.ObjectPath), "--method", idapi.Interface+"."+idapi.MethodCreateModuleIdentity, id, "{'managed_by': <'"+managedBy+"'>}")
		return out + errOut, code
	}
	for i, managedBy := range []string{strings.Repeat("m", 300), `Iot\tEdge`} {
		id := fmt.Sprintf("tester-%d", i)
		out, code := create(id, managedBy)
		if code == 0 || !strings.Contains(out, bus.ErrInvalidArgs) || !strings.Contains(out, "managed_by") {
			t.Errorf("CreateModuleIdentity %s with managed_by %.20q: %d %.300s; want InvalidArgs naming managed_by", id, managedBy, code, out)
		}
		if _, ok := w.cloud.Hub.Module("manual-sas", id); ok {
			t.Errorf("%s was registered in the hub with the refused managed_by", id)
		}
		if _, err := w.id.Modules(ctx); err != nil {
			t.Fatalf("ListModuleIdentities after %s's create: %v", id, err)
		}
	}
	// A managed_by of the usual kind still works.
	if out, code := create("tester-ok", "IotEdge"); code != 0 {
		t.Fatalf("CreateModuleIdentity tester-ok managed_by IotEdge: %d %s", code, out)
	}
}
