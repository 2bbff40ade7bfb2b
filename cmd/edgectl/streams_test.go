package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgev2/edgev2/internal/testenv"
)

// runBinary runs the built edgectl with env added and returns its streams
// and exit code.
func runBinary(t *testing.T, bin string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("edgectl %q: %v", args, err)
	}
	return out.String(), errOut.String(), code
}

// oneJSONDocument decodes stdout into v and fails unless it is exactly one
// JSON document.
func oneJSONDocument(t *testing.T, what, stdout string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(stdout))
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: stdout is not JSON (%v): %q", what, err, stdout)
	}
	if _, err := dec.Token(); err != io.EOF {
		t.Fatalf("%s: stdout holds more than one JSON document: %q", what, stdout)
	}
}

// TestEdgectlBinaryStreamsAndExitCodes runs the built binary as a user or a
// script meets it: help and version on stdout with exit 0, usage mistakes
// and failures on stderr with their exit codes, and with --json every
// failure also as one JSON document on stdout.
func TestEdgectlBinaryStreamsAndExitCodes(t *testing.T) {
	bin := testenv.BuildBinary(t, "./cmd/edgectl")
	noBus := []string{"DBUS_SYSTEM_BUS_ADDRESS=unix:path=" + filepath.Join(t.TempDir(), "no-bus")}

	t.Run("HelpGoesToStdoutWithExit0", func(t *testing.T) {
		for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}} {
			out, errOut, code := runBinary(t, bin, nil, args...)
			if code != exitOK || errOut != "" || !strings.Contains(out, "usage: edgectl COMMAND") || !strings.Contains(out, "support-bundle") {
				t.Errorf("edgectl %q: exit %d, stdout %q, stderr %q; want the usage on stdout, exit 0", args, code, out, errOut)
			}
		}
		for _, args := range [][]string{{"help", "keys"}, {"keys", "--help"}, {"keys", "sign", "--help"}, {"help", "tpm"}} {
			out, errOut, code := runBinary(t, bin, nil, args...)
			if code != exitOK || errOut != "" || !strings.Contains(out, "usage: edgectl") {
				t.Errorf("edgectl %q: exit %d, stdout %q, stderr %q; want its usage on stdout, exit 0", args, code, out, errOut)
			}
		}
		out, errOut, code := runBinary(t, bin, nil, "keys", "sign", "--help")
		if !strings.Contains(out, "-mechanism") {
			t.Errorf("keys sign --help does not list its flags: %q %q (exit %d)", out, errOut, code)
		}
	})

	t.Run("NoCommandIsAUsageErrorOnStderr", func(t *testing.T) {
		out, errOut, code := runBinary(t, bin, nil)
		if code != exitUsage || out != "" || !strings.Contains(errOut, "usage: edgectl COMMAND") {
			t.Errorf("edgectl: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
	})

	t.Run("VersionNamesVersionAndCommit", func(t *testing.T) {
		for _, args := range [][]string{{"--version"}, {"version"}} {
			out, errOut, code := runBinary(t, bin, nil, args...)
			if code != exitOK || errOut != "" || !strings.HasPrefix(out, "edgectl devel (commit ") {
				t.Errorf("edgectl %q: exit %d, stdout %q, stderr %q", args, code, out, errOut)
			}
		}
		// As the package build stamps it (packaging/debian/rules).
		stamped := filepath.Join(t.TempDir(), "edgectl")
		build := exec.Command("go", "build", "-ldflags", "-X main.version=1.2.3-1 -X main.commit=0123456789abcdef+changes", "-o", stamped, "./cmd/edgectl")
		build.Dir = testenv.RepoRoot()
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
		out, _, code := runBinary(t, stamped, nil, "--version")
		if code != exitOK || !strings.HasPrefix(out, "edgectl 1.2.3-1 (commit 0123456789abcdef, with uncommitted changes)") {
			t.Errorf("stamped --version: exit %d, %q", code, out)
		}
		out, _, _ = runBinary(t, stamped, nil, "version", "--json")
		var v versionJSON
		oneJSONDocument(t, "version --json", out, &v)
		if v.Version != "1.2.3-1" || v.Commit != "0123456789abcdef" || !v.Modified || v.Go == "" {
			t.Errorf("version --json = %+v", v)
		}
	})

	t.Run("NoBusIsOneCauseWithOneFix", func(t *testing.T) {
		_, errOut, code := runBinary(t, bin, noBus, "keys", "list")
		line := strings.TrimSpace(errOut)
		if code != exitUnavailable || strings.Contains(line, "\n") || !strings.Contains(line, "cannot reach the system bus") ||
			strings.Count(line, "system bus") != 1 || strings.Contains(line, "keyd") || strings.Count(line, "(") != 1 ||
			!strings.Contains(line, "DBUS_SYSTEM_BUS_ADDRESS") {
			t.Errorf("keys list without a bus: exit %d, stderr %q; want one line, the bus named once, one hint about the bus", code, errOut)
		}
	})

	t.Run("ConfigApplyWithoutASuperConfigNamesAnExampleThatExists", func(t *testing.T) {
		cmd := exec.Command(bin, "config", "apply", "-c", filepath.Join(t.TempDir(), "config.toml"), "--dry-run")
		cmd.Dir = testenv.RepoRoot() // a fresh checkout
		out, _ := cmd.CombinedOutput()
		_, after, ok := strings.Cut(string(out), "create it from ")
		example, _, _ := strings.Cut(after, " ")
		if !ok || example == "" {
			t.Fatalf("config apply without a super-config: %s", out)
		}
		if _, err := os.Stat(example); err != nil {
			t.Errorf("config apply points at %s, which does not exist: %s", example, out)
		}
	})

	t.Run("JSONFailuresAreOneDocumentOnStdout", func(t *testing.T) {
		cases := []struct {
			args []string
			kind string
			code int
		}{
			{[]string{"status", "--json"}, "unavailable", exitUnavailable},
			{[]string{"keys", "list", "--json"}, "unavailable", exitUnavailable},
			{[]string{"keys", "list", "--output", "json"}, "unavailable", exitUnavailable},
			{[]string{"identity", "show", "--json"}, "unavailable", exitUnavailable},
			{[]string{"certs", "list", "--json"}, "unavailable", exitUnavailable},
			{[]string{"modules", "list", "--json"}, "unavailable", exitUnavailable},
			{[]string{"keys", "sign", "--json"}, "usage", exitUsage},
			{[]string{"keys", "list", "--bogus", "--json"}, "usage", exitUsage},
			{[]string{"keys", "explode", "--json"}, "usage", exitUsage},
			{[]string{"frobnicate", "--json"}, "usage", exitUsage},
		}
		for _, c := range cases {
			out, errOut, code := runBinary(t, bin, noBus, c.args...)
			var doc struct {
				Error errorJSON `json:"error"`
			}
			oneJSONDocument(t, strings.Join(c.args, " "), out, &doc)
			e := doc.Error
			if code != c.code || e.Kind != c.kind || e.ExitCode != c.code || e.Message == "" || e.Command == "" {
				t.Errorf("edgectl %q: exit %d, error %+v; want kind %s, exit %d", c.args, code, e, c.kind, c.code)
			}
			if strings.Count(strings.TrimSpace(errOut), "\n") != 0 || errOut == "" {
				t.Errorf("edgectl %q: stderr is not one line: %q", c.args, errOut)
			}
		}
		// Without --json, stdout stays empty on failure.
		if out, _, _ := runBinary(t, bin, noBus, "keys", "list"); out != "" {
			t.Errorf("keys list without --json printed on stdout: %q", out)
		}
	})
}

func TestHumanValueShowsTimesAndDurations(t *testing.T) {
	now := time.Date(2026, 12, 4, 18, 0, 0, 0, time.UTC)
	cases := []struct {
		key  string
		v    any
		want string
	}{
		{"provisioned_at", uint64(now.Add(-90 * time.Minute).Unix()), "2026-12-04T16:30:00Z (1h30m ago)"},
		{"provisioned_at", uint64(now.Add(-72 * time.Hour).Unix()), "2026-12-01T18:00:00Z (3 days ago)"},
		{"provisioned_at", uint64(0), "never"},
		{"renew_at", int64(now.Add(30 * time.Second).Unix()), "2026-12-04T18:00:30Z (30s from now)"},
		{"ttl_s", uint32(3600), "1h0m0s"},
		{"device_id", "edge-gw-1", "edge-gw-1"},
		{"from_cache", true, "true"},
	}
	for _, c := range cases {
		if got := humanValue(c.key, c.v, now); got != c.want {
			t.Errorf("humanValue(%s, %v) = %q, want %q", c.key, c.v, got, c.want)
		}
	}
}
