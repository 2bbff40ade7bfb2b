package main

import (
	"archive/zip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/edgev2/edgev2/internal/atomicfile"
	mclient "github.com/edgev2/edgev2/modrt/client"
)

// bundleLogLines bounds each log in a support bundle.
const bundleLogLines = 2000

func runSupportBundle(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := &cli{name: "support-bundle", stdout: stdout, stderr: stderr}
	fs := c.flags()
	out := fs.String("o", "", "the zip to write (default edgev2-support-<time>.zip)")
	o := checkOptions{now: time.Now}
	fs.StringVar(&o.superConfig, "c", "/etc/edgev2/config.toml", "the super-config")
	fs.StringVar(&o.configDir, "config-dir", "", "directory of the per-service configs (default: the super-config's)")
	fs.StringVar(&o.polkitActionsDir, "polkit-actions-dir", "/usr/share/polkit-1/actions", "where polkit actions are installed")
	fs.StringVar(&o.containerdSocket, "containerd-socket", "", "containerd's socket")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "time limit for each network check")
	fs.DurationVar(&o.expiryWarning, "expiry-warning", 7*24*time.Hour, "warn about certificates expiring sooner than this")
	if _, code := c.parse(fs, args, 0, 0, "[-o FILE] [-c FILE] [--config-dir DIR]"); code >= 0 {
		return code
	}
	if o.configDir == "" {
		o.configDir = filepath.Dir(o.superConfig)
	}
	if *out == "" {
		*out = "edgev2-support-" + time.Now().UTC().Format("20060102T150405Z") + ".zip"
	}
	entries := collectBundle(ctx, o)
	if err := writeZip(*out, entries); err != nil {
		return c.fail(err)
	}
	if c.json {
		names := make([]string, 0, len(entries))
		for _, e := range entries {
			names = append(names, e.name)
		}
		return c.emit(map[string]any{"bundle": *out, "files": names})
	}
	fmt.Fprintf(c.stdout, "wrote %s (%d files; secrets redacted)\n", *out, len(entries))
	return exitOK
}

type bundleEntry struct {
	name string
	data []byte
}

// collectBundle gathers the check report, redacted configs (the
// super-config and the four per-service configs, parsed and rewritten by
// redactTOML; inline key files are never taken), service journals and
// module logs (redactText). Nothing in it fails the bundle: what cannot be
// collected is said in the bundle instead.
func collectBundle(ctx context.Context, o checkOptions) []bundleEntry {
	var es []bundleEntry
	add := func(name string, data []byte) { es = append(es, bundleEntry{name, data}) }
	rep := runChecks(ctx, o)
	j, _ := json.MarshalIndent(rep, "", "  ")
	// Check messages name settings, never secret values; a URL with a
	// password in it is hidden all the same.
	add("check.json", []byte(redactText(string(j))))

	configs := []string{o.superConfig}
	for _, s := range services {
		configs = append(configs, filepath.Join(o.configDir, s.config))
	}
	for _, p := range configs {
		data, err := os.ReadFile(p)
		if err != nil {
			add("configs/"+filepath.Base(p)+".missing.txt", []byte(fmt.Sprintf("%s: %v\n", p, err)))
			continue
		}
		add("configs/"+filepath.Base(p), []byte(redactTOML(string(data))))
	}

	if _, err := exec.LookPath("journalctl"); err != nil {
		add("logs/README.txt", []byte("journalctl is not installed on this system: no service logs collected\n"))
	} else {
		for _, s := range services {
			out, err := exec.CommandContext(ctx, "journalctl", "-u", s.unit, "--no-pager", "-o", "short-iso", "-n", fmt.Sprint(bundleLogLines)).CombinedOutput()
			text := redactText(string(out))
			if err != nil {
				text += fmt.Sprintf("\n(journalctl: %v)\n", err)
			}
			add("logs/"+s.unit+".log", []byte(text))
		}
	}

	es = append(es, moduleLogEntries(ctx)...)
	return es
}

func moduleLogEntries(ctx context.Context) []bundleEntry {
	conn, err := connect()
	if err != nil {
		return []bundleEntry{{"modules/README.txt", []byte(fmt.Sprintf("no module logs: %v\n", err))}}
	}
	defer conn.Close()
	mc := mclient.New(conn)
	names, err := mc.ListModules(ctx)
	if err != nil {
		return []bundleEntry{{"modules/README.txt", []byte(fmt.Sprintf("no module logs: the Module Runtime did not list modules: %v\n", err))}}
	}
	var es []bundleEntry
	var list []mclient.Module
	for _, n := range names {
		if m, err := mc.Module(ctx, n); err == nil {
			list = append(list, m)
		}
		text, err := moduleLogText(ctx, mc, n, mclient.LogOptions{Tail: bundleLogLines, Timestamps: true})
		if err != nil {
			text += fmt.Sprintf("\n(logs: %v)\n", err)
		}
		es = append(es, bundleEntry{"modules/" + n + ".log", []byte(redactText(text))})
	}
	j, _ := json.MarshalIndent(list, "", "  ")
	return append([]bundleEntry{{"modules/list.json", j}}, es...)
}

// writeZip writes the entries to path atomically, 0600 (logs may say more
// than the operator wants shared by accident).
func writeZip(path string, entries []bundleEntry) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".support-bundle-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	zw := zip.NewWriter(f)
	for _, e := range entries {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: e.name, Method: zip.Deflate, Modified: time.Now()})
		if err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", path, err)
		}
		if _, err := w.Write(e.data); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	if err := zw.Close(); err != nil {
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
