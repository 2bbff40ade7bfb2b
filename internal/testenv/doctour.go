package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/edgev2/edgev2/internal/labcloud/labhost"
)

// TourT is what LabcloudDocTour reports to: a test that can fail and go on.
type TourT interface {
	TB
	Errorf(format string, args ...any)
	Failed() bool
}

// LabcloudDocTour runs every "$ " command between <!-- name-tour:begin -->
// and <!-- name-tour:end --> of doc (a path under the repository) in one
// bash session, in a directory holding the tour's <!-- name-config -->
// block as labcloud.toml, against the edgev2-labcloud command built here,
// on a name and loopback address of its own ($LAB, $LISTEN). A command
// fails the test when it exits non-zero, or does not print the line under
// it that starts "# expect: "; one followed by "# expect-fail: " must exit
// non-zero printing that. Fewer than minSteps commands means the markers
// are wrong. tools are the programs the tour needs.
func LabcloudDocTour(t TourT, doc, name string, minSteps int, tools ...string) {
	t.Helper()
	for _, tool := range append([]string{"bash"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			Missing(t, tool, err.Error())
		}
	}
	text, err := os.ReadFile(filepath.Join(RepoRoot(), doc))
	if err != nil {
		t.Fatalf("%v", err)
	}
	_, tour, ok := strings.Cut(string(text), "<!-- "+name+"-tour:begin -->")
	tour, _, ok2 := strings.Cut(tour, "<!-- "+name+"-tour:end -->")
	_, cfg, ok3 := strings.Cut(tour, "<!-- "+name+"-config -->\n```toml\n")
	cfg, _, ok4 := strings.Cut(cfg, "```")
	if !ok || !ok2 || !ok3 || !ok4 {
		t.Fatalf("%s lacks the %s-tour or %s-config markers", doc, name, name)
	}

	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if out, err := exec.Command(gobin, "build", "-o", bin+"/", "github.com/edgev2/edgev2/cmd/edgev2-labcloud").CombinedOutput(); err != nil {
		t.Fatalf("build edgev2-labcloud: %v\n%s", err, out)
	}
	work := filepath.Join(dir, "work")
	os.MkdirAll(filepath.Join(work, ".tour"), 0o755)
	if err := os.WriteFile(filepath.Join(work, "labcloud.toml"), []byte(cfg), 0o600); err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { // the tour kills it; this is for a tour that stopped early
		if b, err := os.ReadFile(filepath.Join(work, "labcloud.pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
				syscall.Kill(pid, syscall.SIGTERM)
			}
		}
	})

	type step struct{ cmd, expect, expectFail string }
	var steps []step
	lines := strings.Split(tour, "\n")
	for i, line := range lines {
		cmd, isCmd := strings.CutPrefix(line, "$ ")
		if !isCmd {
			continue
		}
		s := step{cmd: cmd}
		if i+1 < len(lines) {
			if v, ok := strings.CutPrefix(lines[i+1], "# expect: "); ok {
				s.expect = v
			}
			if v, ok := strings.CutPrefix(lines[i+1], "# expect-fail: "); ok {
				s.expectFail = v
			}
		}
		steps = append(steps, s)
	}
	if len(steps) < minSteps {
		t.Fatalf("the tour has only %d commands; the markers may be wrong", len(steps))
	}
	var script strings.Builder
	fmt.Fprintf(&script, "export PATH=%q:\"$PATH\"\n", bin)
	// Its own name and loopback address on 443, as every labcloud in tests.
	lab := labhost.Reserve(t)
	fmt.Fprintf(&script, "export LAB=%q LISTEN=%q\n", lab.Name, lab.Addr())
	for i, s := range steps {
		fmt.Fprintf(&script, "{\n%s\n} > .tour/%d.out 2>&1; echo $? > .tour/%d.rc\n", s.cmd, i, i)
	}
	c := exec.Command("bash", "-c", script.String())
	c.Dir = work
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("tour script: %v\n%s", err, out)
	}
	for i, s := range steps {
		out, _ := os.ReadFile(filepath.Join(work, ".tour", strconv.Itoa(i)+".out"))
		rc, _ := os.ReadFile(filepath.Join(work, ".tour", strconv.Itoa(i)+".rc"))
		failed := strings.TrimSpace(string(rc)) != "0"
		switch {
		case s.expectFail != "":
			if !failed || !strings.Contains(string(out), s.expectFail) {
				t.Errorf("$ %s\n  exit %s: %s\n  want a failure saying %q", s.cmd, rc, out, s.expectFail)
			}
		case failed:
			t.Errorf("$ %s\n  exit %s: %s", s.cmd, rc, out)
		case s.expect != "" && !strings.Contains(string(out), s.expect):
			t.Errorf("$ %s\n  printed %s\n  want it to contain %q", s.cmd, out, s.expect)
		}
	}
	if t.Failed() {
		log, _ := os.ReadFile(filepath.Join(work, "labcloud.log"))
		t.Logf("labcloud log:\n%s", log)
	}
}
