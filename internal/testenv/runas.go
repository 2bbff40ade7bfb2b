package testenv

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// basePath is the PATH every process the harness starts gets, so results
// do not depend on the caller's environment.
const basePath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// runAsTimeout bounds RunAs so a hung client cannot hang the test binary.
const runAsTimeout = 60 * time.Second

// credential returns the credential to run a process as user, with no
// supplementary groups. Another user needs root; the current one does not.
func credential(t TB, name string) *syscall.Credential {
	t.Helper()
	uid, gid := EnsureUser(t, name)
	if uid != os.Geteuid() {
		RequireRoot(t)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
}

// RunAs runs name with args as user, with a minimal environment (PATH plus
// env) in /, and returns what it printed and its exit code (-1 if it was
// killed after the 60 s timeout).
func RunAs(t TB, user string, env []string, name string, args ...string) (stdout, stderr string, exitCode int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runAsTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: credential(t, user)}
	cmd.Env = append([]string{basePath}, env...)
	cmd.Dir = "/"
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run %s as %s: %v", name, user, err)
	}
	code := cmd.ProcessState.ExitCode()
	if ctx.Err() != nil {
		t.Logf("%s %s as %s killed after %v", name, strings.Join(args, " "), user, runAsTimeout)
		code = -1
	}
	return out.String(), errOut.String(), code
}
