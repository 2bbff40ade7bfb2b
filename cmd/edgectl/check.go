package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	godbus "github.com/godbus/dbus/v5"
)

// Check statuses, as printed in JSON (stable).
const (
	statusOK      = "ok"
	statusWarning = "warning"
	statusError   = "error"
	statusSkipped = "skipped" // a check that needs something that failed earlier
)

// checkResult is one named check (JSON field names are stable).
type checkResult struct {
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"`
}

// checkReport is `edgectl check --output json`.
type checkReport struct {
	Status   string        `json:"status"` // ok, warning or error: the worst of the checks
	Checks   []checkResult `json:"checks"`
	Errors   int           `json:"errors"`
	Warnings int           `json:"warnings"`
}

// checkOptions say where to look (flags, so tests can point at a testenv).
type checkOptions struct {
	superConfig      string
	configDir        string
	polkitActionsDir string
	containerdSocket string // "" = modrtd.toml's, else the default
	timeout          time.Duration
	expiryWarning    time.Duration
	now              func() time.Time
}

// newCheckOptions registers the flags of the checks (check and
// support-bundle share them) on fs.
func newCheckOptions(fs *flag.FlagSet) *checkOptions {
	o := &checkOptions{now: time.Now}
	fs.StringVar(&o.superConfig, "c", "/etc/edgev2/config.toml", "the super-config")
	fs.StringVar(&o.configDir, "config-dir", "", "directory of keyd.toml, certd.toml, identityd.toml, modrtd.toml (default: the super-config's directory)")
	fs.StringVar(&o.polkitActionsDir, "polkit-actions-dir", "/usr/share/polkit-1/actions", "where polkit actions are installed")
	fs.StringVar(&o.containerdSocket, "containerd-socket", "", "containerd's socket (default: modrtd.toml's containerd_address)")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "time limit for each network check")
	fs.DurationVar(&o.expiryWarning, "expiry-warning", 7*24*time.Hour, "warn about certificates expiring sooner than this")
	return o
}

// defaults fills in what depends on other flags, after parsing.
func (o *checkOptions) defaults() {
	if o.configDir == "" {
		o.configDir = filepath.Dir(o.superConfig)
	}
}

// checker runs the checks in order; later checks use what earlier ones
// found (configs, the bus connection).
type checker struct {
	o       checkOptions
	results []checkResult
	cfg     deviceConfigs
	conn    *godbus.Conn
	up      map[string]bool // bus name → answers
}

func (k *checker) add(name, status, msg, fix string) {
	k.results = append(k.results, checkResult{Name: name, Status: status, Message: msg, Fix: fix})
}

func (k *checker) ok(name, format string, args ...any) {
	k.add(name, statusOK, fmt.Sprintf(format, args...), "")
}

func (k *checker) run(ctx context.Context) checkReport {
	k.up = map[string]bool{}
	k.checkConfigs()
	k.checkSecrets()
	k.checkModulePolicy()
	k.checkBus(ctx)
	k.checkPolkitActions()
	k.checkKeysAndCerts(ctx)
	k.checkContainerd(ctx)
	k.checkModuleNetwork()
	k.checkCloud(ctx)
	k.checkTPM(ctx)
	k.checkOperationalCert(ctx)
	return summarize(k.results)
}

func summarize(results []checkResult) checkReport {
	rep := checkReport{Status: statusOK, Checks: results}
	for _, r := range results {
		switch r.Status {
		case statusError:
			rep.Errors++
		case statusWarning:
			rep.Warnings++
		}
	}
	switch {
	case rep.Errors > 0:
		rep.Status = statusError
	case rep.Warnings > 0:
		rep.Status = statusWarning
	}
	return rep
}

func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := &cli{name: "check", stdout: stdout, stderr: stderr}
	fs := c.flags()
	o := newCheckOptions(fs)
	fs.StringVar(&o.superConfig, "config", "/etc/edgev2/config.toml", "the super-config")
	if _, code := c.parse(fs, args, 0, 0, "[-c FILE] [--config-dir DIR] [--polkit-actions-dir DIR] [--containerd-socket PATH] [--output json]"); code >= 0 {
		return code
	}
	o.defaults()
	rep := runChecks(ctx, *o)
	if c.json {
		if code := c.emit(rep); code != exitOK {
			return code
		}
	} else {
		printCheck(c.stdout, rep)
	}
	if rep.Errors > 0 {
		return exitFailed
	}
	return exitOK
}

// runChecks runs every check with o.
func runChecks(ctx context.Context, o checkOptions) checkReport {
	k := &checker{o: o}
	defer func() {
		if k.conn != nil {
			k.conn.Close()
		}
	}()
	return k.run(ctx)
}

func printCheck(w io.Writer, rep checkReport) {
	marks := map[string]string{statusOK: "√", statusWarning: "‼", statusError: "×", statusSkipped: "-"}
	for _, r := range rep.Checks {
		fmt.Fprintf(w, "%s %s: %s\n", marks[r.Status], r.Name, r.Message)
		if r.Fix != "" && (r.Status == statusError || r.Status == statusWarning) {
			fmt.Fprintf(w, "    fix: %s\n", r.Fix)
		}
	}
	fmt.Fprintf(w, "\n%d checks: %d errors, %d warnings — %s\n", len(rep.Checks), rep.Errors, rep.Warnings, strings.ToUpper(rep.Status))
}
