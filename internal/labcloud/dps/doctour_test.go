package dps_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/edgev2/edgev2/internal/labcloud/labhost"
	"github.com/edgev2/edgev2/internal/testenv"
)

// TestDocTourWorksWithCurlAndOpenSSL runs every "$ " command of the tour in
// docs/labcloud.md in one bash session, against edgev2-labcloud built here.
func TestDocTourWorksWithCurlAndOpenSSL(t *testing.T) {
	for _, tool := range []string{"curl", "openssl", "base64", "bash", "od"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, tool, err.Error())
		}
	}
	doc, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "docs", "labcloud.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, tour, ok := strings.Cut(string(doc), "<!-- dps-tour:begin -->")
	tour, _, ok2 := strings.Cut(tour, "<!-- dps-tour:end -->")
	_, cfg, ok3 := strings.Cut(tour, "<!-- dps-config -->\n```toml\n")
	cfg, _, ok4 := strings.Cut(cfg, "```")
	if !ok || !ok2 || !ok3 || !ok4 {
		t.Fatal("docs/labcloud.md lacks the dps-tour or dps-config markers")
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
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if b, err := os.ReadFile(filepath.Join(work, "labcloud.pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
				syscall.Kill(pid, syscall.SIGTERM)
			}
		}
	})
	type step struct{ cmd, expect string }
	var steps []step
	lines := strings.Split(tour, "\n")
	for i, line := range lines {
		cmd, isCmd := strings.CutPrefix(line, "$ ")
		if !isCmd {
			continue
		}
		s := step{cmd: cmd}
		if i+1 < len(lines) {
			s.expect, _ = strings.CutPrefix(lines[i+1], "# expect: ")
			if !strings.HasPrefix(lines[i+1], "# expect: ") {
				s.expect = ""
			}
		}
		steps = append(steps, s)
	}
	if len(steps) < 12 {
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
		switch {
		case strings.TrimSpace(string(rc)) != "0":
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
