package workload

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
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
// TestConnectionOfAnExitedProcessIsNotTakenForItsReusedPid: it connects,
// hands the connection to the test over fd 3 and exits.
func TestHelperConnectAndExit(t *testing.T) {
	sock := os.Getenv("WORKLOAD_CONNECT_AND_EXIT")
	if sock == "" {
		return // only as the helper process
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		os.Exit(2)
	}
	f, _ := c.(*net.UnixConn).File()
	if err := unix.Sendmsg(3, []byte{0}, unix.UnixRights(int(f.Fd())), nil, 0); err != nil {
		os.Exit(3)
	}
	os.Exit(0)
}

// A pid read from SO_PEERCRED when a connection was made names whatever
// process has that number later. A process that connects, passes its
// connection on (to a process of another module, or a child) and exits
// leaves a pid the kernel gives out again; once a process of the socket's
// module has it, the pid rule alone would serve the connection as the
// module's. The test plays that reuse (the backend owns the dead pid):
// the connection is refused, while a live process of the module is served.
func TestConnectionOfAnExitedProcessIsNotTakenForItsReusedPid(t *testing.T) {
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sp[0])
	child := os.NewFile(uintptr(sp[1]), "handover")
	defer child.Close()

	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperConnectAndExit$")
	cmd.Env = append(os.Environ(), "WORKLOAD_CONNECT_AND_EXIT="+filepath.Join(dir, "sensor", "workload.sock"))
	cmd.ExtraFiles = []*os.File{child}
	be := &reusedPidBackend{}
	m := NewManager(dir, be, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := m.Listen("sensor"); err != nil {
		t.Fatal(err)
	}
	defer m.Close("sensor")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	be.pid = int32(cmd.Process.Pid)
	if err := cmd.Wait(); err != nil { // exited and reaped: its pid is free
		t.Fatalf("helper: %v", err)
	}
	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(sp[0], buf, oob, 0)
	if err != nil {
		t.Fatal(err)
	}
	msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
	if len(msgs) != 1 {
		t.Fatalf("no connection handed over")
	}
	fds, _ := unix.ParseUnixRights(&msgs[0])
	handed, err := net.FileConn(os.NewFile(uintptr(fds[0]), "conn"))
	if err != nil {
		t.Fatal(err)
	}
	defer handed.Close()

	get := func(c net.Conn) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://workload/trust-bundle?api-version=2019-01-30", nil)
		if err := req.Write(c); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
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
