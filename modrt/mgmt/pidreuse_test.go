package mgmt

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/edgev2/edgev2/internal/testenv"
)

// TestHelperConnectAndExit is the connecting process of
// TestConnectionOfAnExitedProcessIsNotTakenForItsReusedPid.
func TestHelperConnectAndExit(t *testing.T) { testenv.ConnectAndExit() }

// A module's process reaches the agent's socket (host_pid, through
// /proc/<pid>/root), is refused, passes its connection to a child and
// exits; once its pid belongs to edgeAgent (or to a host process of root),
// the pid rule alone would serve the child as the agent. The test plays
// the reuse (the resolver names edgeAgent for the dead pid): the
// connection is refused, while the live agent is served.
func TestConnectionOfAnExitedProcessIsNotTakenForItsReusedPid(t *testing.T) {
	var dead atomic.Int32
	e := newEnv(t, func(ctx context.Context, pid int32) (string, error) {
		if pid == int32(os.Getpid()) || pid == dead.Load() {
			return AgentModule, nil
		}
		return "snoop", nil
	}, false)

	handed, pid := testenv.ConnFromExitedProcess(t, e.sock)
	dead.Store(int32(pid))

	// Legitimate: the live agent gets past the agent-only check (404: no such module).
	if r := e.do("DELETE", "/modules/no-such-module?api-version=2019-01-30", ""); r.status != 404 {
		t.Fatalf("the live agent: %d %s", r.status, r.body)
	}
	status, body := testenv.RoundTrip(t, handed, "DELETE", "http://mgmt/modules/no-such-module?api-version=2019-01-30")
	if status != 403 || !strings.Contains(body, "has exited") {
		t.Fatalf("the connection of an exited process whose pid is now the agent's: %d %s; want 403 saying it exited", status, body)
	}
}

// TestHelperRootCall is the caller of
// TestRootInAnotherPidNamespaceIsNotAHostTool: it calls an agent-only
// route and prints the status.
func TestHelperRootCall(t *testing.T) {
	sock := os.Getenv("MGMT_ROOT_CALL")
	if sock == "" {
		return // only as the helper process
	}
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	req, _ := http.NewRequest("DELETE", "http://mgmt/modules/no-such-module?api-version=2019-01-30", nil)
	resp, err := c.Do(req)
	if err != nil {
		os.Stdout.WriteString("STATUS 0\n")
		os.Exit(0)
	}
	resp.Body.Close()
	os.Stdout.WriteString("STATUS " + strconv.Itoa(resp.StatusCode) + "\n")
	os.Exit(0)
}

// Root is trusted as a host tool only in the host's pid namespace: a
// container's root (a module's, whose pid the resolver cannot place while
// containerd does not answer) calling in from a pid namespace of its own
// is refused, while root on the host is let through.
func TestRootInAnotherPidNamespaceIsNotAHostTool(t *testing.T) {
	testenv.RequireRoot(t)
	e := newEnv(t, func(context.Context, int32) (string, error) { return "", nil }, true)
	if r := e.do("DELETE", "/modules/no-such-module?api-version=2019-01-30", ""); r.status != 404 {
		t.Fatalf("root on the host: %d %s; want 404 (past the agent-only check)", r.status, r.body)
	}
	cmd := exec.Command("unshare", "--pid", "--fork", "--kill-child", os.Args[0], "-test.run=^TestHelperRootCall$")
	cmd.Env = append(os.Environ(), "MGMT_ROOT_CALL="+e.sock)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("unshare: %v %s", err, out)
	}
	if !strings.Contains(string(out), "STATUS 403") {
		t.Fatalf("root in a pid namespace of its own: %s; want 403", out)
	}
}
