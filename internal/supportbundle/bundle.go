// Package supportbundle builds the support bundle (a zip of the check
// report, redacted configs, service journals and module logs) that both
// `edgectl support-bundle` and the management API's supportbundle route serve.
package supportbundle

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
)

// LogLines bounds each log in a bundle.
const LogLines = 2000

// Service is one edgev2 service: its systemd unit and per-service config.
type Service struct{ Unit, Config string }

// Services are the four services whose configs and journals a bundle holds.
var Services = []Service{
	{"edgev2-keyd", "keyd.toml"},
	{"edgev2-certd", "certd.toml"},
	{"edgev2-identityd", "identityd.toml"},
	{"edgev2-modrtd", "modrtd.toml"},
}

// RuntimeModules are the modules EdgeRuntimeOnly keeps (iotedge's
// "edge runtime only": its own two modules).
var RuntimeModules = map[string]bool{"edgeAgent": true, "edgeHub": true}

// Modules is what a bundle needs of the module runtime.
type Modules interface {
	// List names the modules.
	List(ctx context.Context) ([]string, error)
	// Describe is a module's entry in modules/list.json (no secrets).
	Describe(ctx context.Context, name string) (any, error)
	// Logs is a module's output as text: the last tail lines between since
	// and until (zero: unbounded), each line with its timestamp.
	Logs(ctx context.Context, name string, since, until time.Time, tail int) (string, error)
}

// Options say what a bundle holds: edgectl support-bundle's flags, or the
// management API's query (since, until, iothub_hostname, edge_runtime_only).
type Options struct {
	SuperConfig string // the super-config
	ConfigDir   string // directory of the per-service configs
	// Since and Until bound the journals and module logs (zero: unbounded).
	Since, Until time.Time
	// EdgeRuntimeOnly keeps only edgeAgent's and edgeHub's module logs.
	EdgeRuntimeOnly bool
	// Check returns the check report as JSON; nil leaves a note instead.
	Check func(ctx context.Context) ([]byte, error)
	// Modules is the runtime; nil leaves ModulesUnavailable as a note.
	Modules            Modules
	ModulesUnavailable string
	// Journal runs journalctl; nil is exec.CommandContext (tests replace it).
	Journal func(ctx context.Context, args ...string) ([]byte, error)
}

// Entry is one file of a bundle.
type Entry struct {
	Name string
	Data []byte
}

// Collect gathers the check report, redacted configs (the super-config and
// the four per-service configs, parsed and rewritten by RedactTOML; inline
// key files are never taken), service journals and module logs (RedactText).
// Nothing in it fails the bundle: what cannot be collected is said in the
// bundle instead.
func Collect(ctx context.Context, o Options) []Entry {
	var es []Entry
	add := func(name string, data []byte) { es = append(es, Entry{name, data}) }
	if o.Check == nil {
		add("check.missing.txt", []byte("no check report: edgectl check could not be run\n"))
	} else if j, err := o.Check(ctx); err != nil {
		add("check.missing.txt", []byte(RedactText(fmt.Sprintf("no check report: %v\n", err))))
	} else {
		// Check messages name settings, never secret values; a URL with a
		// password in it is hidden all the same.
		add("check.json", []byte(RedactText(string(j))))
	}

	configs := []string{o.SuperConfig}
	for _, s := range Services {
		configs = append(configs, filepath.Join(o.ConfigDir, s.Config))
	}
	for _, p := range configs {
		data, err := os.ReadFile(p)
		if err != nil {
			add("configs/"+filepath.Base(p)+".missing.txt", []byte(fmt.Sprintf("%s: %v\n", p, err)))
			continue
		}
		add("configs/"+filepath.Base(p), []byte(RedactTOML(string(data))))
	}

	es = append(es, journalEntries(ctx, o)...)
	es = append(es, moduleEntries(ctx, o)...)
	return es
}

func journalEntries(ctx context.Context, o Options) []Entry {
	journal := o.Journal
	if journal == nil {
		if _, err := exec.LookPath("journalctl"); err != nil {
			return []Entry{{"logs/README.txt", []byte("journalctl is not installed on this system: no service logs collected\n")}}
		}
		journal = func(ctx context.Context, args ...string) ([]byte, error) {
			return exec.CommandContext(ctx, "journalctl", args...).CombinedOutput()
		}
	}
	var es []Entry
	for _, s := range Services {
		args := []string{"-u", s.Unit, "--no-pager", "-o", "short-iso", "-n", fmt.Sprint(LogLines)}
		if !o.Since.IsZero() {
			args = append(args, "--since", "@"+fmt.Sprint(o.Since.Unix()))
		}
		if !o.Until.IsZero() {
			args = append(args, "--until", "@"+fmt.Sprint(o.Until.Unix()))
		}
		out, err := journal(ctx, args...)
		text := RedactText(string(out))
		if err != nil {
			text += fmt.Sprintf("\n(journalctl: %v)\n", err)
		}
		es = append(es, Entry{"logs/" + s.Unit + ".log", []byte(text)})
	}
	return es
}

func moduleEntries(ctx context.Context, o Options) []Entry {
	if o.Modules == nil {
		return []Entry{{"modules/README.txt", []byte(RedactText(fmt.Sprintf("no module logs: %s\n", o.ModulesUnavailable)))}}
	}
	names, err := o.Modules.List(ctx)
	if err != nil {
		return []Entry{{"modules/README.txt", []byte(RedactText(fmt.Sprintf("no module logs: the Module Runtime did not list modules: %v\n", err)))}}
	}
	var es []Entry
	list := []any{}
	for _, n := range names {
		if o.EdgeRuntimeOnly && !RuntimeModules[n] {
			continue
		}
		if d, err := o.Modules.Describe(ctx, n); err == nil {
			list = append(list, d)
		}
		text, err := o.Modules.Logs(ctx, n, o.Since, o.Until, LogLines)
		if err != nil {
			text += fmt.Sprintf("\n(logs: %v)\n", err)
		}
		es = append(es, Entry{"modules/" + n + ".log", []byte(RedactText(text))})
	}
	j, _ := json.MarshalIndent(list, "", "  ")
	return append([]Entry{{"modules/list.json", []byte(RedactText(string(j)))}}, es...)
}

// Write writes the entries as a zip to w.
func Write(w io.Writer, entries []Entry) error {
	zw := zip.NewWriter(w)
	now := time.Now()
	for _, e := range entries {
		f, err := zw.CreateHeader(&zip.FileHeader{Name: e.Name, Method: zip.Deflate, Modified: now})
		if err != nil {
			return err
		}
		if _, err := f.Write(e.Data); err != nil {
			return err
		}
	}
	return zw.Close()
}
