package unixsock

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestListenSetsTheModeAndReplacesAStaleSocket(t *testing.T) {
	dir := t.TempDir()
	l, err := Listen(dir, "s.sock", 0o666)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "s.sock")
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o666 {
		t.Fatalf("socket %v, %v", fi, err)
	}
	Abandon(l)
	if _, err := os.Lstat(path); err != nil {
		t.Fatal("abandoned socket is gone")
	}
	l, err = Listen(dir, "s.sock", 0o600)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	l.Close()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("Close left the socket: %v", err)
	}
}

func TestListenNeverFollowsAPlantedSymlink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("secret"), 0o600)
	os.Symlink(victim, filepath.Join(dir, "s.sock"))
	l, err := Listen(dir, "s.sock", 0o666)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fi, err := os.Stat(victim)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("victim mode %v, %v", fi.Mode(), err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "secret" {
		t.Fatal("victim changed")
	}
	if fi, _ := os.Lstat(filepath.Join(dir, "s.sock")); fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("the link was not replaced by the socket: %v", fi.Mode())
	}
}

func TestListenRefusesToReplaceAFile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "s.sock"), []byte("data"), 0o644)
	if _, err := Listen(dir, "s.sock", 0o666); !errors.Is(err, ErrNotSocket) {
		t.Fatalf("want ErrNotSocket, got %v", err)
	}
	if _, err := Listen(dir, "../x", 0o666); err == nil {
		t.Fatal("accepted a name with a slash")
	}
}

func TestChmodRefusesASwappedName(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, nil, 0o600)
	os.Symlink(victim, filepath.Join(dir, "s.sock"))
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	// What a module racing listen and chmod would leave.
	if err := chmodSocket(int(d.Fd()), "s.sock", 0o666); !errors.Is(err, ErrNotSocket) {
		t.Fatalf("chmod through a link: %v", err)
	}
	if fi, _ := os.Stat(victim); fi.Mode().Perm() != 0o600 {
		t.Fatalf("victim mode %v", fi.Mode())
	}
}
