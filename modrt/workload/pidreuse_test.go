package workload

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgev2/edgev2/internal/testenv"
)

// reusedPidBackend says pid (the connecting process's number, now reused)
// and the test's own pid are the module's.
type reusedPidBackend struct {
	fakeBackend
	pid int32
}

func (b reusedPidBackend) OwnsPid(_ context.Context, _ string, pid int32) bool {
	return pid == b.pid || pid == int32(os.Getpid())
}

// TestHelperConnectAndExit is the connecting process of
// TestConnectionOfAnExitedProcessIsNotTakenForItsReusedPid.
func TestHelperConnectAndExit(t *testing.T) { testenv.ConnectAndExit() }

// A pid read from SO_PEERCRED when a connection was made names whatever
// process has that number later. A process that connects, passes its
// connection on (to a process of another module, or a child) and exits
// leaves a pid the kernel gives out again; once a process of the socket's
// module has it, the pid rule alone would serve the connection as the
// module's. The test plays that reuse (the backend owns the dead pid):
// the connection is refused, while a live process of the module is served.
func TestConnectionOfAnExitedProcessIsNotTakenForItsReusedPid(t *testing.T) {
	dir := t.TempDir()
	be := &reusedPidBackend{}
	m := NewManager(dir, be, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := m.Listen("sensor"); err != nil {
		t.Fatal(err)
	}
	defer m.Close("sensor")
	handed, pid := testenv.ConnFromExitedProcess(t, filepath.Join(dir, "sensor", "workload.sock"))
	be.pid = int32(pid)

	get := func(c net.Conn) (int, string) {
		t.Helper()
		return testenv.RoundTrip(t, c, "GET", "http://workload/trust-bundle?api-version=2019-01-30")
	}
	// Legitimate: a live process of the module.
	own, err := net.Dial("unix", filepath.Join(dir, "sensor", "workload.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	if code, body := get(own); code != 200 || !strings.Contains(body, "TRUST") {
		t.Fatalf("a live process of the module: %d %s", code, body)
	}
	// The connection of the exited process, its pid now the module's.
	if code, body := get(handed); code != 403 || !strings.Contains(body, "has exited") {
		t.Fatalf("the connection of an exited process whose pid is reused: %d %s; want 403 saying it exited", code, body)
	}
}
