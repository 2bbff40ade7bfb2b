package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/edgev2/edgev2/internal/atomicfile"
)

// installFile is one file the super-config compiles to (a per-service
// config, the polkit rules): where, whose, which mode, and the unit to
// restart when it changes.
type installFile struct {
	Path    string
	Owner   string // "user" or "user:group"; "" root
	Mode    os.FileMode
	Data    []byte
	Service string // systemd unit to restart on change; "" none
	// Remove: the file must not exist (an obsolete inline key): it is
	// deleted if present.
	Remove bool
	// Credential: Data is a secret to store at Path as the systemd
	// credential Credential, sealed per Seal (tpm2+host, host, or none:
	// in clear). It is compared by decrypting the installed one, so an
	// unchanged secret is not re-sealed.
	Credential string
	Seal       string
	// DaemonReload: a unit drop-in; systemd reloads when it changes.
	DaemonReload bool
}

// fileChange is what apply found (or did) for one file.
type fileChange struct {
	Path    string `json:"path"`
	Changed bool   `json:"changed"`
	Reason  string `json:"reason,omitempty"` // "new", "content", "mode", "owner", "seal", "removed"
	Service string `json:"service,omitempty"`
	Sealed  string `json:"sealed,omitempty"` // a credential: tpm2+host, host or none
}

// applyReport is the result of config apply.
type applyReport struct {
	Config      string       `json:"config"`
	Root        string       `json:"root,omitempty"`
	DryRun      bool         `json:"dry_run"`
	Files       []fileChange `json:"files"`
	Reloaded    bool         `json:"daemon_reloaded"` // systemctl daemon-reload ran (a credentials drop-in changed)
	Restarted   []string     `json:"restarted"`
	NotRunning  []string     `json:"not_running"`  // changed, not running: nothing to restart (they start with the new configuration)
	NeedRestart []string     `json:"need_restart"` // changed but not restarted (--no-restart, --root, --dry-run, no systemd)
	Note        string       `json:"note,omitempty"`
}

// owner resolves "user[:group]" to ids.
func owner(spec string) (uid, gid int, err error) {
	if spec == "" || spec == "root" {
		return 0, 0, nil
	}
	name, group, hasGroup := strings.Cut(spec, ":")
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, fmt.Errorf("owner %q: %w (create the service user; the package does this)", spec, err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	if hasGroup {
		g, err := user.LookupGroup(group)
		if err != nil {
			return 0, 0, fmt.Errorf("owner %q: %w", spec, err)
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	return uid, gid, nil
}

// diffFile says why the installed file at path differs from f ("" if it
// does not).
func diffFile(path string, f installFile, uid, gid int) (string, error) {
	st, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "new", nil
	}
	if err != nil {
		return "", fmt.Errorf("inspect %s: %w", path, err)
	}
	old, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	if !bytes.Equal(old, f.Data) {
		return "content", nil
	}
	return metaChange(st, f.Mode, uid, gid), nil
}

// metaChange is what differs of an installed file's metadata, st, from
// what it should have: "mode", "owner" or "" (neither).
func metaChange(st os.FileInfo, mode os.FileMode, uid, gid int) string {
	if st.Mode().Perm() != mode.Perm() {
		return "mode"
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && (int(sys.Uid) != uid || int(sys.Gid) != gid) {
		return "owner"
	}
	return ""
}

// install writes every file that differs under root (atomically, then
// owner and mode), unless dryRun. It returns one change per file, in order.
// Everything that can fail short of writing (owners, reading and sealing
// credentials) is done for every file before the first is written, so a
// failure there leaves the installed state as it was.
func install(ctx context.Context, files []installFile, root string, dryRun bool) ([]fileChange, error) {
	type step struct {
		f        installFile
		path     string
		uid, gid int
		data     []byte
	}
	var steps []step
	out := make([]fileChange, 0, len(files))
	for _, f := range files {
		if !filepath.IsAbs(f.Path) {
			return nil, fmt.Errorf("compiled file path %q is not absolute", f.Path)
		}
		path := filepath.Join(root, f.Path)
		if f.Remove {
			if _, err := os.Lstat(path); err != nil {
				continue // already gone: nothing to report
			}
			out = append(out, fileChange{Path: path, Changed: true, Reason: "removed", Service: f.Service})
			steps = append(steps, step{f: f, path: path})
			continue
		}
		uid, gid, err := owner(f.Owner)
		if err != nil {
			return nil, fmt.Errorf("install %s: %w", path, err)
		}
		var why string
		if f.Credential != "" {
			why, err = diffCredential(ctx, path, f, root, uid, gid)
		} else {
			why, err = diffFile(path, f, uid, gid)
		}
		if err != nil {
			return nil, err
		}
		ch := fileChange{Path: path, Changed: why != "", Reason: why, Service: f.Service}
		if f.Credential != "" {
			ch.Sealed = f.Seal
		}
		out = append(out, ch)
		if why == "" || dryRun {
			continue
		}
		data := f.Data
		if f.Credential != "" && f.Seal != sealNone {
			if data, err = sealCredential(ctx, f.Credential, f.Seal, root, f.Data); err != nil {
				return nil, err
			}
		}
		steps = append(steps, step{f: f, path: path, uid: uid, gid: gid, data: data})
	}
	if dryRun {
		return out, nil
	}
	for _, s := range steps {
		if s.f.Remove {
			if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return out, fmt.Errorf("remove obsolete %s: %w", s.path, err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(s.path), 0o755); err != nil {
			return out, fmt.Errorf("make directory for %s: %w", s.path, err)
		}
		// Written 0600 root-owned first: the content is never readable by
		// anyone it is not meant for; owner and mode are set before the
		// rename, so a killed apply never leaves a service a config it
		// cannot read.
		if err := atomicfile.WriteFileAs(s.path, s.data, s.f.Mode.Perm(), s.uid, s.gid); err != nil {
			return out, fmt.Errorf("install %s (owner %s): %w", s.path, s.f.Owner, err)
		}
	}
	return out, nil
}

// servicesToRestart lists the units of changed files, once each, sorted.
func servicesToRestart(changes []fileChange) []string {
	seen := map[string]bool{}
	var units []string
	for _, c := range changes {
		if c.Changed && c.Service != "" && !seen[c.Service] {
			seen[c.Service] = true
			units = append(units, c.Service)
		}
	}
	sort.Strings(units)
	return units
}

// systemdRunning is sd_booted(): systemd is PID 1.
func systemdRunning() bool {
	st, err := os.Stat("/run/systemd/system")
	return err == nil && st.IsDir()
}

// unitActive asks systemd whether unit is running (active, activating or
// reloading); the real one runs `systemctl is-active`.
var unitActive = func(ctx context.Context, unit string) bool {
	out, _ := exec.CommandContext(ctx, "systemctl", "is-active", unit).Output()
	switch strings.TrimSpace(string(out)) {
	case "active", "activating", "reloading":
		return true
	}
	return false
}

// tryRestart is `systemctl try-restart unit`.
var tryRestart = func(ctx context.Context, unit string) error {
	out, err := exec.CommandContext(ctx, "systemctl", "try-restart", unit).CombinedOutput()
	if err != nil {
		return fmt.Errorf("systemctl try-restart %s: %v: %s", unit, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// restart restarts each unit that runs (`systemctl try-restart`) and says
// which ones did not run, so the report says what really happened.
func restart(ctx context.Context, units []string) (done, notRunning []string, err error) {
	done, notRunning = []string{}, []string{}
	for _, u := range units {
		if !unitActive(ctx, u) {
			notRunning = append(notRunning, u)
			continue
		}
		if err := tryRestart(ctx, u); err != nil {
			return done, notRunning, err
		}
		done = append(done, u)
	}
	return done, notRunning, nil
}

// compileFunc turns a super-config into the files to install; the real
// one is superconfig's Load + Compile (compile.go).
type compileFunc func(path string) ([]installFile, error)

type applyOptions struct {
	config, root      string
	dryRun, noRestart bool
}

// apply is config apply: compile, install what changed, restart its units.
func apply(ctx context.Context, compile compileFunc, o applyOptions) (*applyReport, error) {
	files, err := compile(o.config)
	if err != nil {
		return nil, err
	}
	files, err = resolveCredentials(files, o.root)
	if err != nil {
		return nil, err
	}
	changes, err := install(ctx, files, o.root, o.dryRun)
	rep := &applyReport{Config: o.config, Root: o.root, DryRun: o.dryRun, Files: changes, Restarted: []string{}, NotRunning: []string{}, NeedRestart: []string{}}
	if err != nil {
		return rep, err
	}
	if needsReload(files, changes) && !o.dryRun && o.root == "" && systemdRunning() {
		if err := daemonReload(ctx); err != nil {
			return rep, err
		}
		rep.Reloaded = true
	}
	units := servicesToRestart(changes)
	var restartNow []string
	restartNow, rep.NeedRestart, rep.Note = restartPlan(units, o, systemdRunning())
	if len(restartNow) > 0 {
		rep.Restarted, rep.NotRunning, err = restart(ctx, restartNow)
		if err != nil {
			rep.NeedRestart = restartNow[len(rep.Restarted)+len(rep.NotRunning):]
			return rep, err
		}
	}
	return rep, nil
}

// restartPlan decides which changed units to restart now and which only to
// name, and why.
func restartPlan(units []string, o applyOptions, systemd bool) (now, later []string, note string) {
	later = []string{}
	switch {
	case len(units) == 0:
		return nil, later, ""
	case o.dryRun:
		return nil, units, "dry run: nothing was written"
	case o.noRestart:
		return nil, units, "--no-restart: restart these services to use the new configuration"
	case o.root != "":
		return nil, units, "installed under --root: no service restarted"
	case !systemd:
		return nil, units, "systemd is not running: restart these services yourself"
	}
	return units, later, ""
}

func runConfig(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return subcommands(ctx, "config", args, stdout, stderr, map[string]func(context.Context, *cli, []string) int{
		"apply": configApply,
	})
}

func configApply(ctx context.Context, c *cli, args []string) int {
	fs := c.flags()
	var o applyOptions
	fs.StringVar(&o.config, "c", "/etc/edgev2/config.toml", "the super-config")
	fs.StringVar(&o.config, "config", "/etc/edgev2/config.toml", "the super-config")
	fs.StringVar(&o.root, "root", "", "install under this directory instead of / (tests, image builds); restarts nothing")
	fs.BoolVar(&o.dryRun, "dry-run", false, "show what would change; write nothing")
	fs.BoolVar(&o.noRestart, "no-restart", false, "write files but restart no service")
	if _, code := c.parse(fs, args, 0, 0, "[-c FILE] [--root DIR] [--dry-run] [--no-restart] [--json]"); code >= 0 {
		return code
	}
	if o.root != "" {
		abs, err := filepath.Abs(o.root)
		if err != nil {
			return c.fail(err)
		}
		o.root = abs
	}
	rep, err := apply(ctx, compileSuperConfig, o)
	if err != nil && rep == nil {
		return c.fail(err)
	}
	if c.json {
		if code := c.emit(rep); code != exitOK || err == nil {
			return code
		}
		return c.fail(err)
	}
	printApply(c.stdout, rep)
	if err != nil {
		return c.fail(err)
	}
	return exitOK
}

func printApply(w io.Writer, rep *applyReport) {
	verb := "wrote"
	if rep.DryRun {
		verb = "would write"
	}
	n := 0
	for _, f := range rep.Files {
		if f.Changed {
			n++
			fmt.Fprintf(w, "%s %s (%s)\n", verb, f.Path, f.Reason)
		}
	}
	if n == 0 {
		fmt.Fprintf(w, "nothing changed (%d files up to date)\n", len(rep.Files))
	}
	for _, u := range rep.Restarted {
		fmt.Fprintf(w, "restarted %s\n", u)
	}
	if len(rep.NotRunning) > 0 {
		names := make([]string, len(rep.NotRunning))
		for i, u := range rep.NotRunning {
			names[i] = strings.TrimSuffix(u, ".service")
		}
		fmt.Fprintf(w, "not running (nothing to restart): %s\n", strings.Join(rep.NotRunning, ", "))
		fmt.Fprintf(w, "  each starts with the new configuration on its first call; to run them now and at boot: systemctl enable --now %s\n",
			strings.Join(names, " "))
	}
	if len(rep.NeedRestart) > 0 {
		fmt.Fprintf(w, "needs a restart: %s (%s)\n", strings.Join(rep.NeedRestart, ", "), rep.Note)
	}
}
