package testenv

import (
	"os"
	"os/exec"
)

// MountTmpfs mounts a 1 MiB tmpfs on dir (made if missing), as a data
// partition or a USB stick the host mounts below a directory modules bind,
// and unmounts it when the test ends.
func MountTmpfs(t TB, dir string) {
	t.Helper()
	RequireRoot(t)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("%v", err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "edgev2-test", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs on %s: %v: %s", dir, err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
}
