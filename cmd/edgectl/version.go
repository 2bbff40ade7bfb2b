package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

// version is the package version, set when the Debian package is built
// (packaging/debian/rules: -ldflags "-X main.version=..."); a binary built
// from a checkout says "devel".
var version = "devel"

// commit is the commit the binary was built from, set by `make build` and
// the package build (whose tree is a git archive, without .git); "+changes"
// at its end marks uncommitted changes. Without it, the Go toolchain's VCS
// stamp (go build in a git clone) gives the commit.
var commit = ""

type versionJSON struct {
	Version  string `json:"version"`
	Commit   string `json:"commit,omitempty"`
	Modified bool   `json:"modified,omitempty"` // built from a tree with uncommitted changes
	Go       string `json:"go"`
}

// buildVersion gathers the version, and the commit from -X or from the VCS
// stamp that `go build` records in a git checkout.
func buildVersion() versionJSON {
	v := versionJSON{Version: version, Go: runtime.Version()}
	if commit != "" {
		v.Commit, v.Modified = strings.CutSuffix(commit, "+changes")
		return v
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Commit = s.Value
			case "vcs.modified":
				v.Modified = s.Value == "true"
			}
		}
	}
	return v
}

func (v versionJSON) String() string {
	s := "edgectl " + v.Version
	switch {
	case v.Commit != "" && v.Modified:
		s += " (commit " + v.Commit + ", with uncommitted changes)"
	case v.Commit != "":
		s += " (commit " + v.Commit + ")"
	default:
		s += " (commit unknown)"
	}
	return s + ", " + v.Go
}

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) int {
	c := &cli{name: "version", stdout: stdout, stderr: stderr}
	if _, code := c.parse(c.flags(), args, 0, 0, "[--json]"); code >= 0 {
		return code
	}
	v := buildVersion()
	if c.json {
		return c.emit(v)
	}
	fmt.Fprintln(c.stdout, v)
	return exitOK
}
