package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/edgev2/edgev2/internal/testenv"
)

// applyHelperRoot, set, makes TestApplyHelperProcess apply killedKeyd
// under that root (the child strace kills).
const applyHelperRoot = "EDGECTL_TEST_APPLY_ROOT"

func killedKeyd(data string) installFile {
	return installFile{Path: "/etc/edgev2/keyd.toml", Owner: testenv.ServiceUser, Mode: 0o600, Data: []byte(data), Service: "edgev2-keyd.service"}
}

// TestApplyHelperProcess is the apply that TestApplyKilledAtItsChownLeavesKeydAConfigItCanRead
// runs under strace; it does nothing in a normal run.
func TestApplyHelperProcess(t *testing.T) {
	root := os.Getenv(applyHelperRoot)
	if root == "" {
		return // a normal run: only the strace test runs this as its child
	}
	apply(context.Background(), compiled(killedKeyd("homedir = \"/var/lib/edgev2/keyd-new\"\n")), applyOptions{config: "test.toml", root: root})
}

// TestApplyKilledAtItsChownLeavesKeydAConfigItCanRead proves that an
// apply killed (-9) at any change of ownership leaves keyd.toml as keyd can
// read it: the old file, or the new one already owned by edgekeys. A file
// renamed into place before its chown is root's, 0600: keyd (User=edgekeys)
// cannot read its configuration and does not start (78, not restarted)
// until someone applies again. strace kills the apply at its first chown.
func TestApplyKilledAtItsChownLeavesKeydAConfigItCanRead(t *testing.T) {
	testenv.RequireRoot(t)
	if _, err := exec.LookPath("strace"); err != nil {
		testenv.Missing(t, "strace", "strace is not installed (Debian package strace)")
	}
	kuid, _ := testenv.EnsureUser(t, testenv.ServiceUser)
	root := t.TempDir()
	if _, err := apply(context.Background(), compiled(killedKeyd("homedir = \"/var/lib/edgev2/keyd\"\n")), applyOptions{config: "test.toml", root: root}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=chown,fchown,fchownat,lchown",
		"-e", "inject=chown,fchown,fchownat,lchown:signal=SIGKILL",
		os.Args[0], "-test.run=^TestApplyHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), applyHelperRoot+"="+root)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the apply under strace was not killed at a chown:\n%s", out)
	}
	st, err := os.Stat(filepath.Join(root, "/etc/edgev2/keyd.toml"))
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(root, "/etc/edgev2/keyd.toml"))
	if uid := st.Sys().(*syscall.Stat_t).Uid; int(uid) != kuid {
		t.Fatalf("after an apply killed at its chown, keyd.toml (%q) is owned by uid %d, mode %v: keyd (uid %d) cannot read its configuration", data, uid, st.Mode().Perm(), kuid)
	}
}
