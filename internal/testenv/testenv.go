// Package testenv starts the real parts edgev2 is tested against (a private
// system-like dbus-daemon, polkitd, SoftHSM2 tokens, swtpm, containerd, a
// registry, labcloud, a second uid) on private paths. Device (StartDevice) is
// THE fixture: a test that needs a bus with services on it asks for one, with
// the daemons, configs, polkit rules, cloud and containerd it wants, instead
// of building its own.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
)

// TB is the part of testing.TB the harness uses, so benchmarks and tools
// outside `go test` can drive it too.
type TB interface {
	Helper()
	Cleanup(func())
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	Logf(format string, args ...any)
	TempDir() string
}

// InCI reports whether this run is CI, where a missing part is a failure.
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing reports that a part the test needs is not there: under CI=true the
// test fails, locally it is skipped with the reason and the fix.
func Missing(t TB, part, reason string) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s is required under CI=true but is missing: %s (run `make deps` as root)", part, reason)
	}
	t.Skipf("%s missing: %s (run `make deps` as root to install it)", part, reason)
}

// program is a program the harness runs and the Debian package that
// installs it.
type program struct{ name, pkg string }

// lookPrograms returns the paths of progs, in their order, or nil after
// reporting the first one missing from PATH as Missing.
func lookPrograms(t TB, progs ...program) []string {
	t.Helper()
	paths := make([]string, len(progs))
	for i, p := range progs {
		path, err := exec.LookPath(p.name)
		if err != nil {
			Missing(t, p.name, p.name+" is not on PATH (Debian package "+p.pkg+")")
			return nil
		}
		paths[i] = path
	}
	return paths
}

// firstExisting returns the first of paths that exists, or "".
func firstExisting(paths []string) string {
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// RequireRoot skips (or fails under CI) when not running as root.
func RequireRoot(t TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "root", "the harness starts dbus-daemon, polkitd and services under their own uids")
	}
}

var (
	rootOnce sync.Once
	rootDir  string
)

// RepoRoot returns the repository root (the directory holding go.mod).
func RepoRoot() string {
	rootOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		rootDir = filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	})
	return rootDir
}

// SharedTempDir makes a temporary directory that other uids can enter
// (0755), unlike t.TempDir's parents on some systems. It is removed on cleanup.
func SharedTempDir(t TB, pattern string) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "edgev2-"+pattern+"-")
	if err != nil {
		t.Fatalf("make temp dir: %v", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("chmod temp dir: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
