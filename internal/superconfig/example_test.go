package superconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A missing super-config points at an example that exists: installed, or in
// the checkout the command runs in (issue: the installed path was named on
// a fresh clone, where it does not exist).
func TestMissingSuperConfigPointsAtAnExampleThatExists(t *testing.T) {
	ex := ExampleFile()
	if _, err := os.Stat(ex); err != nil {
		t.Fatalf("ExampleFile() = %s, which does not exist: %v", ex, err)
	}
	if _, err := os.Stat(InstalledExample); err != nil {
		want, _ := filepath.Abs("../../packaging/config.toml.example")
		if ex != want {
			t.Errorf("in a checkout ExampleFile() = %s, want %s", ex, want)
		}
	}
	_, err := Load(filepath.Join(t.TempDir(), "config.toml"))
	if err == nil || !strings.Contains(err.Error(), "create it from "+ex) {
		t.Errorf("Load(missing) = %v, want the fix to name %s", err, ex)
	}
}
