package mgmt

import (
	"testing"

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

	testenv.CheckConnectionsBounded(t, e.sock, "http://mgmt"+v("/systeminfo"), "the caller", attempts, bound)
}
