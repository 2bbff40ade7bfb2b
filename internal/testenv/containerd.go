package testenv

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// containerdStartTimeout bounds how long a private containerd may take to
// serve its socket.
const containerdStartTimeout = 15 * time.Second

// Containerd is a private containerd daemon: its own root, state and
// sockets under a temporary directory, the CRI plugin disabled.
type Containerd struct {
	Address string // gRPC socket, for containerd.New and ctr -a
	Root    string // persistent root (content, snapshots, metadata)
	State   string // state dir (task bundles, shim addresses)

	dir    string
	config string
	out    *capBuffer // output of every run, across restarts
	running
}

// StartContainerd starts a private containerd and waits (15 s at most) until
// its socket answers. Cleanup kills the tasks it runs, the daemon, its shims
// and whatever it left mounted. A missing containerd or runc is Missing.
func StartContainerd(t TB) *Containerd {
	t.Helper()
	RequireRoot(t)
	for _, bin := range []string{"containerd", "containerd-shim-runc-v2", "runc", "ctr"} {
		if _, err := exec.LookPath(bin); err != nil {
			Missing(t, "containerd", bin+" is not on PATH (Debian packages containerd and runc)")
			return nil
		}
	}
	dir := SharedTempDir(t, "containerd")
	c := &Containerd{
		Address: filepath.Join(dir, "containerd.sock"),
		Root:    filepath.Join(dir, "root"),
		State:   filepath.Join(dir, "state"),
		dir:     dir,
		config:  filepath.Join(dir, "config.toml"),
		out:     &capBuffer{},
	}
	conf := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = %q

[ttrpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, c.Root, c.State, c.Address, c.Address+".ttrpc", filepath.Join(dir, "opt"))
	if err := os.WriteFile(c.config, []byte(conf), 0o644); err != nil {
		t.Fatalf("write containerd config: %v", err)
	}
	// Registered before the start so a failed start still cleans up;
	// cleanups run last-registered first, so this runs before the
	// temporary directory is removed.
	t.Cleanup(func() {
		c.shutdown()
		logIfFailed(t, "containerd", c.out)
	})
	c.start(t)
	return c
}

func (c *Containerd) start(t TB) {
	t.Helper()
	cmd := exec.Command("containerd", "--config", c.config, "--log-level", "warn")
	cmd.Env = []string{basePath}
	cmd.Dir = c.dir
	// Its own process group, so a test's signals to ours never reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p, err := startProcess(cmd, c.out)
	if err != nil {
		t.Fatalf("start containerd: %v", err)
	}
	c.set(p)
	served := WaitFor(containerdStartTimeout, func() bool {
		if conn, err := net.DialTimeout("unix", c.Address, time.Second); err == nil {
			conn.Close()
			// The socket accepts before every service is registered;
			// a ctr round trip proves the API answers.
			if _, _, code := c.run("version"); code == 0 {
				return true
			}
		}
		select {
		case <-p.done:
			t.Fatalf("containerd exited (code %d) before serving %s; output:\n%s", p.exitCode(), c.Address, c.out)
		default:
		}
		return false
	})
	if !served {
		p.kill()
		t.Fatalf("containerd did not serve %s within %v; output:\n%s", c.Address, containerdStartTimeout, c.out)
	}
}

// Restart kills the daemon with SIGKILL and starts it again on the same
// root, state and sockets: running containers must survive it (their shims
// do), which is what clients are tested against.
func (c *Containerd) Restart(t TB) {
	t.Helper()
	c.current().kill()
	fmt.Fprintf(c.out, "--- testenv: restarting containerd ---\n")
	c.start(t)
}

// Ctr runs `ctr -a <address> args...` and returns its stdout; it fails the
// test if ctr fails.
func (c *Containerd) Ctr(t TB, args ...string) string {
	t.Helper()
	stdout, stderr, code := c.run(args...)
	if code != 0 {
		t.Fatalf("ctr %s: exit %d: %s", strings.Join(args, " "), code, stderr)
	}
	return stdout
}

func (c *Containerd) run(args ...string) (stdout, stderr string, code int) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ctr", append([]string{"-a", c.Address}, args...)...)
	cmd.Env = []string{basePath}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code = 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if errb.Len() == 0 {
			errb.WriteString(err.Error())
		}
	}
	return out.String(), errb.String(), code
}

// shutdown kills every task the daemon runs, then the daemon, then shims
// that outlived it, and unmounts what is left under its directory.
func (c *Containerd) shutdown() {
	if p := c.current(); p != nil {
		select {
		case <-p.done:
		default:
			c.killTasks()
			p.stop(syscall.SIGTERM, 5*time.Second)
		}
	}
	c.killShims()
	unmountUnder(c.dir)
}

// killTasks kills and deletes the tasks of every namespace, so their
// shims exit by themselves.
func (c *Containerd) killTasks() {
	nss, _, code := c.run("namespaces", "ls", "-q")
	if code != 0 {
		return
	}
	for _, ns := range strings.Fields(nss) {
		ids, _, code := c.run("-n", ns, "tasks", "ls", "-q")
		if code != 0 {
			continue
		}
		for _, id := range strings.Fields(ids) {
			c.run("-n", ns, "tasks", "kill", "-a", "-s", "SIGKILL", id)
			c.run("-n", ns, "tasks", "delete", "-f", id)
		}
	}
}

// killShims kills containerd-shim-runc-v2 processes started for this
// daemon (their command line names its address), with the processes of
// their containers.
func (c *Containerd) killShims() {
	for _, pid := range shimPids(c.Address) {
		for _, child := range childPids(pid) {
			syscall.Kill(child, syscall.SIGKILL)
		}
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

func shimPids(address string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if len(args) == 0 || !strings.HasSuffix(args[0], "containerd-shim-runc-v2") {
			continue
		}
		for i, a := range args {
			if a == "-address" && i+1 < len(args) && args[i+1] == address {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// childPids are the direct children of pid (a shim's are its containers'
// init processes; killing those kills the whole container).
func childPids(pid int) []int {
	var kids []int
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, task := range tasks {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, task.Name()))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(data)) {
			var k int
			if _, err := fmt.Sscanf(f, "%d", &k); err == nil {
				kids = append(kids, k)
			}
		}
	}
	return kids
}

// unmountUnder detaches every mount below dir, deepest first (rootfs
// mounts, overlay snapshots, shm of tasks killed the hard way).
func unmountUnder(dir string) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMountPath(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			points = append(points, mp)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	for _, mp := range points {
		syscall.Unmount(mp, syscall.MNT_DETACH)
	}
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
