package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFileReplacesWholeAndSetsMode(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state")
	for _, content := range []string{"first", "second, longer content"} {
		if err := WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p)
		if err != nil || string(got) != content {
			t.Fatalf("read back %q, %v; want %q", got, err, content)
		}
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", st.Mode().Perm())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("temporary files left behind: %v", ents)
	}
}

func TestCreateRefusesToReplace(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "k")
	if err := Create(p, []byte("a"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Create(p, []byte("b"), 0o600); !errors.Is(err, os.ErrExist) {
		t.Fatalf("second Create = %v, want ErrExist", err)
	}
	if got, _ := os.ReadFile(p); string(got) != "a" {
		t.Errorf("content = %q, want the first", got)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("temporary files left behind: %v", ents)
	}
}

func TestPrivateDirIsOwnerOnlyAndDropsWritesCutShort(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{".tmp-key-123": "torn", "key.pem": "kept"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := PrivateDir(dir); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	} else if fi.Mode().Perm() != 0o700 {
		t.Fatalf("mode after PrivateDir: %v; want 0700", fi.Mode().Perm())
	}
	if _, err := os.Stat(filepath.Join(dir, ".tmp-key-123")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a write cut short is still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "key.pem")); err != nil {
		t.Errorf("a written file went: %v", err)
	}
	if err := PrivateDir(filepath.Join(dir, "key.pem", "sub")); err == nil {
		t.Error("PrivateDir below a file succeeded")
	}
}
