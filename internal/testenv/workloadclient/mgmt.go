package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// mgmtCall calls an agent-only route of the management API
// (DELETE /modules/no-such-module: 404 once the caller is edgeAgent, 403
// before) and returns the HTTP status, 0 if the call failed.
func mgmtCall() int {
	sock := strings.TrimPrefix(os.Getenv("IOTEDGE_MANAGEMENTURI"), "unix://")
	if g := os.Getenv("MGMT_SOCK_GLOB"); g != "" {
		// Another module's way in: the agent's socket through /proc/<pid>/root.
		ms, _ := filepath.Glob(g)
		if len(ms) == 0 {
			return -1
		}
		sock = ms[0]
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	req, _ := http.NewRequest(http.MethodDelete, "http://mgmt/modules/no-such-module?api-version=2019-01-30", nil)
	resp, err := c.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// mgmtProbe calls the management API as the task's first process and as a
// child process of it (same pid namespace, not the task's pid).
func mgmtProbe(res map[string]any) {
	res["init_pid"] = os.Getpid()
	res["init_status"] = mgmtCall()
	self, _ := os.Executable()
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), "MGMT_PROBE_CHILD=1")
	out, err := cmd.Output()
	if err != nil {
		res["error"] = err.Error()
		return
	}
	res["child_status"], _ = strconv.Atoi(strings.TrimSpace(string(out)))
}
