package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/edgev2/edgev2/internal/atomicfile"
	"github.com/edgev2/edgev2/internal/supportbundle"
	mclient "github.com/edgev2/edgev2/modrt/client"
)

func runSupportBundle(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := &cli{name: "support-bundle", stdout: stdout, stderr: stderr}
	fs := c.flags()
	out := fs.String("o", "", "the zip to write (default edgev2-support-<time>.zip)")
	o := newCheckOptions(fs)
	if _, code := c.parse(fs, args, 0, 0, "[-o FILE] [-c FILE] [--config-dir DIR]"); code >= 0 {
		return code
	}
	o.defaults()
	if *out == "" {
		*out = "edgev2-support-" + time.Now().UTC().Format("20060102T150405Z") + ".zip"
	}
	entries := collectBundle(ctx, *o)
	if err := writeZip(*out, entries); err != nil {
		return c.fail(err)
	}
	if c.json {
		names := make([]string, 0, len(entries))
		for _, e := range entries {
			names = append(names, e.Name)
		}
		return c.emit(map[string]any{"bundle": *out, "files": names})
	}
	fmt.Fprintf(c.stdout, "wrote %s (%d files; secrets redacted)\n", *out, len(entries))
	return exitOK
}

// collectBundle is the bundle of o: the check report run here, and the
// module list and logs from the Module Runtime over the bus.
func collectBundle(ctx context.Context, o checkOptions) []supportbundle.Entry {
	so := supportbundle.Options{SuperConfig: o.superConfig, ConfigDir: o.configDir,
		Check: func(ctx context.Context) ([]byte, error) { return json.MarshalIndent(runChecks(ctx, o), "", "  ") }}
	conn, err := connect()
	if err != nil {
		so.ModulesUnavailable = err.Error()
	} else {
		defer conn.Close()
		so.Modules = busModules{mclient.New(conn)}
	}
	return supportbundle.Collect(ctx, so)
}

// busModules is the bundle's view of the Module Runtime over the bus.
type busModules struct{ mc *mclient.Client }

func (b busModules) List(ctx context.Context) ([]string, error) { return b.mc.ListModules(ctx) }
func (b busModules) Describe(ctx context.Context, name string) (any, error) {
	return b.mc.Module(ctx, name)
}
func (b busModules) Logs(ctx context.Context, name string, since, until time.Time, tail int) (string, error) {
	return moduleLogText(ctx, b.mc, name, mclient.LogOptions{Tail: tail, Timestamps: true, Since: since, Until: until})
}

// writeZip writes the entries to path atomically, 0600 (logs may say more
// than the operator wants shared by accident).
func writeZip(path string, entries []supportbundle.Entry) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".support-bundle-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	if err := supportbundle.Write(f, entries); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return atomicfile.SyncDir(filepath.Dir(path))
}
