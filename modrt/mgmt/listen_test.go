package mgmt

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/edgev2/edgev2/internal/unixsock"
)

func TestListenUnixReplacesAStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "mgmt.sock")
	l, err := ListenUnix(path, 0o660)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o660 || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("socket %v, %v", fi.Mode(), err)
	}
	if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm() != 0o755 {
		t.Errorf("parent mode %v", di.Mode())
	}
	// A crashed process leaves its socket file behind.
	unixsock.Abandon(l)
	l, err = ListenUnix(path, 0o600)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	defer l.Close()
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestListenUnixRefusesToReplaceAFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mgmt.sock")
	os.WriteFile(path, []byte("data"), 0o644)
	if l, err := ListenUnix(path, 0o660); err == nil {
		l.Close()
		t.Fatal("replaced a regular file")
	}
	if b, _ := os.ReadFile(path); string(b) != "data" {
		t.Error("file changed")
	}
}
