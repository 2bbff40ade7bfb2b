package workload

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/edgev2/edgev2/internal/testenv"
)

// red team s12: a module that opens connection after connection to its
// workload socket and keeps them open makes modrtd hold every one (a
// socket, a pidfd and a goroutine each) until its descriptors run out,
// and with them every other module's socket and the management API.
// modrtd holds at most a bounded number of one module's connections; the
// module's further ones are closed, and the slots come back when it
// hangs up.
func TestWorkloadSocketHoldsABoundedNumberOfAModulesConnections(t *testing.T) {
	const attempts = 300 // well over any bound a module needs
	const bound = 100
	dir := t.TempDir()
	m := NewManager(dir, &countingBackend{owns: true}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := m.Listen("sensor"); err != nil {
		t.Fatal(err)
	}
	defer m.Close("sensor")
	testenv.CheckConnectionsBounded(t, filepath.Join(dir, "sensor", "workload.sock"),
		"http://workload/trust-bundle?api-version=2019-01-30", "one module", attempts, bound)
}
