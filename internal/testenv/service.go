package testenv

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// serviceStartTimeout bounds how long a service may take to own its name.
const serviceStartTimeout = 20 * time.Second

var (
	binMu    sync.Mutex
	binDir   string
	binBuilt = map[string]*binBuild{}
)

type binBuild struct {
	once sync.Once
	path string
	err  error
}

// BuildBinary builds the main package pkg (e.g. "./cmd/edgev2-keyd",
// relative to the repo root) once per test process and returns the path of
// the binary, in a 0755 directory other uids can execute from.
func BuildBinary(t TB, pkg string) string {
	t.Helper()
	binMu.Lock()
	if binDir == "" {
		removeStaleBinDirs()
		dir := fmt.Sprintf("/tmp/edgev2-bin-%d", os.Getpid())
		if err := os.MkdirAll(dir, 0o755); err != nil {
			binMu.Unlock()
			t.Fatalf("make binary dir: %v", err)
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			binMu.Unlock()
			t.Fatalf("chmod binary dir: %v", err)
		}
		binDir = dir
	}
	b := binBuilt[pkg]
	if b == nil {
		b = &binBuild{}
		binBuilt[pkg] = b
	}
	dir := binDir
	binMu.Unlock()

	b.once.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			b.err = fmt.Errorf("go tool not in PATH: %w", err)
			return
		}
		name := strings.TrimSuffix(filepath.Base(strings.TrimSuffix(pkg, "/")), ".go")
		out := filepath.Join(dir, name)
		cmd := exec.Command(goTool, "build", "-o", out, pkg)
		cmd.Dir = RepoRoot()
		if output, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, output)
			return
		}
		if err := os.Chmod(out, 0o755); err != nil {
			b.err = err
			return
		}
		b.path = out
	})
	if b.err != nil {
		t.Fatalf("%v", b.err)
	}
	return b.path
}

// removeStaleBinDirs removes binary dirs left by test processes that are
// gone; the per-process dir cannot be removed by the process itself, as
// it has no end-of-process hook.
func removeStaleBinDirs() {
	dirs, _ := filepath.Glob("/tmp/edgev2-bin-*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), "edgev2-bin-"))
		if err != nil || processAlive(pid) {
			continue
		}
		os.RemoveAll(d)
	}
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// ServiceOptions says how to run a service under test.
type ServiceOptions struct {
	Binary  string   // path, e.g. from BuildBinary
	Args    []string // arguments after the binary
	User    string   // user to run as, e.g. ServiceUser
	Env     []string // added to PATH and DBUS_SYSTEM_BUS_ADDRESS
	BusName string   // well-known name the service owns once ready
	Dir     string   // working directory; "/" if empty
}

// Service is a daemon under test, running as its own user on a Bus.
type Service struct {
	bus *Bus
	opt ServiceOptions
	out *capBuffer // output of every run, across restarts
	running
}

// StartService runs opt.Binary as opt.User on bus and waits (20 s at most)
// until it, this process, owns opt.BusName (a name still held by another
// process fails the start). Its output is logged on cleanup if the test
// failed; cleanup stops it.
func StartService(t TB, bus *Bus, opt ServiceOptions) *Service {
	t.Helper()
	s := &Service{bus: bus, opt: opt, out: &capBuffer{}}
	s.start(t)
	t.Cleanup(func() {
		p := s.current()
		p.stop(syscall.SIGTERM, 5*time.Second)
		logIfFailed(t, filepath.Base(opt.Binary), p.out)
	})
	return s
}

func (s *Service) start(t TB) {
	t.Helper()
	cmd := exec.Command(s.opt.Binary, s.opt.Args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: credential(t, s.opt.User)}
	cmd.Env = append([]string{basePath, "DBUS_SYSTEM_BUS_ADDRESS=" + s.bus.Address}, s.opt.Env...)
	cmd.Dir = s.opt.Dir
	if cmd.Dir == "" {
		cmd.Dir = "/"
	}
	p, err := startProcess(cmd, s.out)
	if err != nil {
		t.Fatalf("start %s as %s: %v", s.opt.Binary, s.opt.User, err)
	}
	s.set(p)
	if s.opt.BusName == "" {
		return
	}
	switch err := s.bus.waitForName(s.opt.BusName, serviceStartTimeout, p.done, cmd.Process.Pid); {
	case errors.Is(err, errExited):
		t.Fatalf("%s exited (code %d) before owning %s; output:\n%s",
			s.opt.Binary, p.exitCode(), s.opt.BusName, p.out)
	case err != nil:
		p.kill()
		t.Fatalf("%s: %v; output:\n%s", s.opt.Binary, err, p.out)
	}
}

// Stop sends SIGTERM, waits (10 s, then SIGKILL) and returns the exit
// code, -1 if the service died from a signal.
func (s *Service) Stop(t TB) int {
	t.Helper()
	p := s.current()
	if !p.stop(syscall.SIGTERM, 10*time.Second) {
		t.Fatalf("%s ignored SIGTERM for 10s and was killed; output:\n%s", s.opt.Binary, p.out)
	}
	s.released()
	return p.exitCode()
}

// Restart starts the service again with the same options, after stopping
// it if it still runs. Output of all runs stays in Output.
func (s *Service) Restart(t TB) {
	t.Helper()
	s.current().stop(syscall.SIGTERM, 10*time.Second)
	s.released()
	fmt.Fprintf(s.out, "--- testenv: restarting %s ---\n", filepath.Base(s.opt.Binary))
	s.start(t)
}

// released waits (5 s at most) until the bus has dropped the stopped
// process's bus name, so the next owner is not refused the name.
func (s *Service) released() {
	if s.opt.BusName != "" {
		s.bus.waitReleased(s.opt.BusName, s.current().cmd.Process.Pid, 5*time.Second)
	}
}

// Output is what the service printed so far (the tail, if it was long).
func (s *Service) Output() string { return s.out.String() }

// String is Output: a *Service given to a failure message's %s (as
// Eventually's args) prints the output as it is when the message is made.
func (s *Service) String() string { return s.Output() }

// RSSKiB is the resident set size of the service (VmRSS), in KiB.
func (s *Service) RSSKiB() int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", s.Pid()))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return n
		}
	}
	return 0
}

// process is a started child whose exit is collected by its own goroutine,
// so callers can wait on done with a timeout.
// running is the process a restartable daemon (Service, Containerd) runs
// now; a restart replaces it.
type running struct {
	mu   sync.Mutex
	proc *process
}

func (r *running) set(p *process) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.proc = p
}

func (r *running) current() *process {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.proc
}

// Pid is the process id of the running daemon.
func (r *running) Pid() int { return r.current().cmd.Process.Pid }

// Kill9 kills the daemon with SIGKILL, as a crash or power cut would, and
// waits until it is gone. A containerd's shims and the containers they run
// keep running.
func (r *running) Kill9(t TB) {
	t.Helper()
	r.current().kill()
}

type process struct {
	cmd  *exec.Cmd
	out  *capBuffer
	done chan struct{} // closed once the process has exited
}

func startProcess(cmd *exec.Cmd, out *capBuffer) (*process, error) {
	p := &process{cmd: cmd, out: out, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// stop signals the process and waits; after grace it is killed. It
// reports whether the process exited within grace.
func (p *process) stop(sig syscall.Signal, grace time.Duration) bool {
	select {
	case <-p.done:
		return true
	default:
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return true
	case <-time.After(grace):
		p.kill()
		return false
	}
}

func (p *process) kill() {
	p.cmd.Process.Kill()
	<-p.done
}

// exitCode is valid once done is closed: -1 for death by signal.
func (p *process) exitCode() int {
	<-p.done
	return p.cmd.ProcessState.ExitCode()
}

// capBuffer collects a child's output, keeping the last outputCap bytes so
// a chatty daemon cannot eat the test's memory.
type capBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	dropped int
	written int
}

const outputCap = 256 << 10

func (b *capBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	b.written += len(p)
	if over := b.buf.Len() - outputCap; over > 0 {
		b.buf.Next(over)
		b.dropped += over
	}
	return len(p), nil
}

// mark is a position in the output, for since.
func (b *capBuffer) mark() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.written
}

// since is what was written after mark (what is still kept of it).
func (b *capBuffer) since(mark int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.String()
	if n := b.written - mark; n < len(s) {
		s = s[len(s)-n:]
	}
	return s
}

func (b *capBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped > 0 {
		return fmt.Sprintf("[%d earlier bytes dropped]\n%s", b.dropped, b.buf.String())
	}
	return b.buf.String()
}

// logIfFailed logs a part's output when the test failed (or when TB
// cannot tell).
func logIfFailed(t TB, part string, out *capBuffer) {
	if f, ok := t.(interface{ Failed() bool }); ok && !f.Failed() {
		return
	}
	if s := out.String(); s != "" {
		t.Logf("%s output:\n%s", part, s)
	}
}

// WaitExit waits up to timeout for the service to exit by itself and
// returns its exit code (-1 for death by a signal); it fails the test if
// the service is still running then.
func (s *Service) WaitExit(t TB, timeout time.Duration) int {
	t.Helper()
	p := s.current()
	select {
	case <-p.done:
		return p.exitCode()
	case <-time.After(timeout):
		t.Fatalf("%s still running after %v; output:\n%s", s.opt.Binary, timeout, p.out)
		return 0
	}
}

// IsRunning reports whether the service's process is still running.
func (s *Service) IsRunning() bool {
	select {
	case <-s.current().done:
		return false
	default:
		return true
	}
}

// ExitConfig is the exit code of a daemon refusing its configuration
// (EX_CONFIG): the units' RestartPreventExitStatus, as restarting cannot fix it.
const ExitConfig = 78

// RefusesConfig runs daemon pkg (built from ./cmd) at debug level on the
// config file cfg with env, and returns its output; the test fails unless
// it exits ExitConfig within two minutes.
func RefusesConfig(t TB, pkg, cfg string, env []string) string {
	t.Helper()
	cmd := exec.Command(BuildBinary(t, pkg), "--config", cfg, "--log-level", "debug")
	cmd.Env = env
	done := make(chan struct{})
	timer := time.AfterFunc(2*time.Minute, func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
		}
	})
	out, err := cmd.CombinedOutput()
	close(done)
	timer.Stop()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != ExitConfig {
		t.Fatalf("%s: %v; want exit %d (bad configuration)\n%s", pkg, err, ExitConfig, out)
	}
	return string(out)
}
