package keys_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgev2/edgev2/internal/testenv"
)

// TestReadmeTourWorks runs every "$ " command of README.md's tour against a
// live keyd and checks the "# expect:" / "# expect-fail:" line after it.
func TestReadmeTourWorks(t *testing.T) {
	for _, tool := range []string{"busctl", "gdbus"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, tool, err.Error())
		}
	}
	readme, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, tour, ok := strings.Cut(string(readme), "<!-- tour:begin -->")
	tour, _, ok2 := strings.Cut(tour, "<!-- tour:end -->")
	if !ok || !ok2 {
		t.Fatal("README.md has no tour markers")
	}
	k := startKeyd(t, "file", "")
	lines := strings.Split(tour, "\n")
	ran := 0
	for i, line := range lines {
		cmd, isCmd := strings.CutPrefix(line, "$ ")
		if !isCmd {
			continue
		}
		ran++
		c := exec.Command("bash", "-c", cmd)
		c.Env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+k.bus.Address)
		out, err := c.CombinedOutput()
		next := ""
		if i+1 < len(lines) {
			next = lines[i+1]
		}
		if want, ok := strings.CutPrefix(next, "# expect-fail: "); ok {
			if err == nil || !strings.Contains(string(out), want) {
				t.Errorf("%s\n  = %v: %s\n  want a failure saying %q", cmd, err, out, want)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s\n  failed: %v: %s", cmd, err, out)
			continue
		}
		if want, ok := strings.CutPrefix(next, "# expect: "); ok && !strings.Contains(string(out), want) {
			t.Errorf("%s\n  printed %s\n  want it to contain %q", cmd, out, want)
		}
	}
	if ran < 10 {
		t.Fatalf("the tour has only %d commands; the markers may be wrong", ran)
	}
}
