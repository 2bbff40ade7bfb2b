package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/edgev2/edgev2/internal/testenv"
)

// TestReadmeTourRunsAfterTheDemo runs the demo as `make demo-shell` does and
// then every "$ " command of README.md's tour against what it left running,
// checking the "# expect:" / "# expect-fail:" line after each; then the tour
// once more, as a reader who runs it twice would.
func TestReadmeTourRunsAfterTheDemo(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root", "the demo starts dbus-daemon, polkitd and the services under their own users")
	}
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

	var out bytes.Buffer
	addr, err := demo(t, newStepPrinter(&out))
	if err != nil {
		t.Fatalf("the demo failed: %v\n%s", err, out.String())
	}
	for _, l := range strings.Split(out.String(), "\n") {
		if n := utf8.RuneCountInString(l); n > width {
			t.Errorf("the demo printed a line of %d columns: %q", n, l)
		}
	}
	for round := 1; round <= 2; round++ {
		if ran := runTour(t, tour, addr); ran < 10 {
			t.Fatalf("the tour has only %d commands; the markers may be wrong", ran)
		}
	}
}

// runTour runs the tour's commands with DBUS_SYSTEM_BUS_ADDRESS=addr, as
// the demo tells the reader to, and returns how many it ran.
func runTour(t *testing.T, tour, addr string) int {
	t.Helper()
	lines := strings.Split(tour, "\n")
	ran := 0
	for i, line := range lines {
		cmd, isCmd := strings.CutPrefix(line, "$ ")
		if !isCmd {
			continue
		}
		ran++
		c := exec.Command("bash", "-c", cmd)
		c.Env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+addr)
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
	return ran
}
