// Command edgectl is the administrator's CLI of edgev2: it applies the
// super-config, checks the device's health and drives the four services
// over their typed D-Bus clients.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/edgev2/edgev2/internal/tpm"
)

// A command is one top-level verb. Its entry point has the same shape as
// other packages' CLIs (e.g. internal/tpm.Main), so adding one is a line in
// commands plus its import.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

// commands is the dispatch table.
var commands = []command{
	{"config", "apply the super-config (config apply [-c FILE] [--root DIR] [--dry-run] [--no-restart])", runConfig},
	{"check", "check the device's health and say how to fix each problem", runCheck},
	{"status", "one line per service: reachable, state", runStatus},
	{"identity", "identity show | reprovision", runIdentity},
	{"keys", "keys list | create | sign", runKeys},
	{"certs", "certs list | show | renew", runCerts},
	{"modules", "modules list | logs [-f] | start | stop | restart | rm", runModules},
	{"images", "images pull | import", runImages},
	{"support-bundle", "write a zip for support (secrets redacted)", runSupportBundle},
	{"tpm", "tpm ek | idevid | ldevid | status: TPM onboarding (docs/tpm.md)", tpm.Main},
	{"version", "the package version and the commit it was built from (also --version)", runVersion},
}

// Exit codes (docs/edgectl.md).
const (
	exitOK          = 0
	exitFailed      = 1 // the operation failed, or check found an error
	exitUsage       = 2 // bad command line
	exitConfig      = 3 // the configuration is invalid
	exitNotAuthz    = 4 // polkit denied the call
	exitUnavailable = 5 // a service (or the bus) cannot be reached
	exitNotFound    = 6 // the named key, certificate or module does not exist
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "--help", "-help":
		usage(stdout)
		return exitOK
	case "help":
		if len(args) > 1 {
			// `edgectl help keys` is `edgectl keys --help`.
			return dispatch(ctx, []string{args[1], "--help"}, stdout, stderr)
		}
		usage(stdout)
		return exitOK
	case "--version", "-version", "-V":
		return runVersion(ctx, args[1:], stdout, stderr)
	}
	for _, c := range commands {
		if c.name == args[0] {
			if c.name == "tpm" && len(args) > 1 && (args[1] == "--help" || args[1] == "-h") {
				// tpm.Main prints its usage on stderr; help goes to stdout.
				return c.run(ctx, args[1:], stdout, stdout)
			}
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	c := &cli{name: args[0], stdout: stdout, stderr: stderr, json: wantsJSON(args)}
	c.name = "edgectl"
	return c.usageError(fmt.Sprintf("edgectl: unknown command %q (run `edgectl help` for the list)", args[0]))
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: edgectl COMMAND [ARGS]  (every command takes --json or --output json)")
	cs := append([]command(nil), commands...)
	sort.Slice(cs, func(i, j int) bool { return cs[i].name < cs[j].name })
	for _, c := range cs {
		fmt.Fprintf(w, "  %-15s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "`edgectl help COMMAND` (or COMMAND --help) shows a command's use; see docs/edgectl.md.")
}
