package mgmt

import (
	"testing"
	"time"

	"github.com/edgev2/edgev2/internal/testenv"
)

// red team s12: edgeAgent (a module) that opens connection after
// connection to the management socket and keeps them open makes modrtd
// hold every one (a socket, a pidfd and a goroutine each, and idle ones
// forever) until its descriptors run out, and with them every module's
// workload socket. modrtd holds a bounded number of connections; further
// ones are closed, and the slots come back when the caller hangs up.
func TestManagementSocketHoldsABoundedNumberOfConnections(t *testing.T) {
	const attempts = 300 // well over what edgeAgent and host tools need
	const bound = 100
	e := newEnv(t, asAgent, false)

	url := "http://mgmt" + v("/systeminfo")
	served, release := testenv.HoldConnections(e.sock, url, attempts)
	defer release()
	if served == 0 {
		t.Fatal("no connection was served at all")
	}
	if served > bound {
		t.Fatalf("modrtd served (and held open) %d connections at once, want at most %d", served, bound)
	}
	release()
	testenv.Eventually(t, 10*time.Second, func() bool { return testenv.AskNew(e.sock, url) },
		"a new connection is served once the caller closed the others")
}
