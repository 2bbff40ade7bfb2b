package modrt

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgev2/edgev2/modrt/modspec"
)

func mustSpec(t *testing.T, json string) *modspec.Spec {
	t.Helper()
	s, err := modspec.ParseSpec([]byte(json))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSpecCacheShowsEveryWriteAndEveryChangedFile: a module's spec is
// parsed once while its file stays the same; a save or a remove through the
// service is seen at once, and so is a file changed behind the service's
// back, even in place with the same size and its modification time set
// back.
func TestSpecCacheShowsEveryWriteAndEveryChangedFile(t *testing.T) {
	dir := t.TempDir()
	s := &Service{specsDir: filepath.Join(dir, "specs")} // settle 0: every parse is kept
	v1 := mustSpec(t, `{"name":"m","type":"docker","config":{"settings":{"image":"alpine:3.18"}}}`)
	v2 := mustSpec(t, `{"name":"m","type":"docker","config":{"settings":{"image":"alpine:3.19"}}}`)
	if got := s.Spec("m"); got != nil {
		t.Fatalf("spec of a module never saved: %+v", got)
	}
	if err := s.saveSpec("m", v1); err != nil {
		t.Fatal(err)
	}
	first := s.Spec("m")
	if first == nil || first.Config.Settings.Image != "alpine:3.18" {
		t.Fatalf("after the first save: %+v", first)
	}
	if again := s.Spec("m"); again != first {
		t.Fatal("an unchanged spec file was parsed again")
	}
	if err := s.saveSpec("m", v2); err != nil {
		t.Fatal(err)
	}
	if got := s.Spec("m"); got == nil || got.Config.Settings.Image != "alpine:3.19" {
		t.Fatalf("after an update: %+v, want alpine:3.19", got)
	}

	// Changed in place: same inode, same size, mtime set back.
	path := filepath.Join(s.specsDir, "m.json")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	edited := strings.Replace(string(data), "alpine:3.19", "alpine:3.20", 1)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(edited), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	os.Chtimes(path, fi.ModTime(), fi.ModTime())
	// The change time moves with the kernel's clock tick: wait for it.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		now, _ := os.Stat(path)
		if !changeTime(now).Equal(changeTime(fi)) || time.Now().After(deadline) {
			break
		}
		f, _ := os.OpenFile(path, os.O_WRONLY, 0)
		f.WriteAt([]byte(edited), 0)
		f.Close()
		os.Chtimes(path, fi.ModTime(), fi.ModTime())
	}
	if got := s.Spec("m"); got == nil || got.Config.Settings.Image != "alpine:3.20" {
		t.Fatalf("after an in-place edit: %+v, want alpine:3.20", got)
	}

	os.Remove(path) // as Remove does, without the runtime
	s.specs.forget("m")
	if got := s.Spec("m"); got != nil {
		t.Fatalf("after the file is gone: %+v", got)
	}
	// Removed behind the service's back: gone too.
	if err := s.saveSpec("m", v1); err != nil {
		t.Fatal(err)
	}
	s.Spec("m")
	os.Remove(path)
	if got := s.Spec("m"); got != nil {
		t.Fatalf("after the file was deleted behind the cache: %+v", got)
	}
}

// TestSpecCacheKeepsNoParseOfAFileChangedJustNow: within the settle time
// of its last change a file is parsed on every read, as a change in the
// same timestamp tick would not show in its stat.
func TestSpecCacheKeepsNoParseOfAFileChangedJustNow(t *testing.T) {
	s := &Service{specsDir: t.TempDir(), specs: specCache{settle: time.Hour}}
	if err := s.saveSpec("m", mustSpec(t, `{"name":"m","type":"docker","config":{"settings":{"image":"alpine:3.18"}}}`)); err != nil {
		t.Fatal(err)
	}
	if a, b := s.Spec("m"), s.Spec("m"); a == nil || a == b {
		t.Fatalf("a spec file changed within the settle time was kept: %p %p", a, b)
	}
}
