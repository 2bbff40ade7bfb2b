package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/fault"
)

// cli is one invocation of a (sub)command: its name for messages, where
// output goes, and the output format.
type cli struct {
	name           string // "keys sign"
	stdout, stderr io.Writer
	json           bool
	service        string // the service the command talks to, for hints
	action         string // the polkit action it needs, for hints
	emitted        bool   // a JSON document went to stdout already
	argsUsage      string // the synopsis after the command's name
	help           string // the synopsis and flags, for --help
}

// flags makes a FlagSet for c with the shared output flags (--json, and
// --output json as in iotedge).
func (c *cli) flags() *flag.FlagSet {
	fs := flag.NewFlagSet("edgectl "+c.name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() { c.flagUsage(fs) }
	fs.BoolVar(&c.json, "json", false, "print JSON instead of a table")
	fs.Func("output", "output format: text or json", func(s string) error {
		switch s {
		case "json":
			c.json = true
		case "text", "human":
			c.json = false
		default:
			return fmt.Errorf("unknown output format %q (use text or json)", s)
		}
		return nil
	})
	return fs
}

// parse parses args and checks the number of positional arguments.
func (c *cli) parse(fs *flag.FlagSet, args []string, minArgs, maxArgs int, argsUsage string) ([]string, int) {
	c.argsUsage = argsUsage
	fs.SetOutput(io.Discard) // the error and the usage are printed below
	err := fs.Parse(interleave(fs, args))
	fs.SetOutput(c.stderr)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(c.stdout, c.help)
		return nil, exitOK
	}
	if err != nil {
		c.json = c.json || wantsJSON(args)
		return nil, c.usageError(fmt.Sprintf("edgectl %s: %v (usage: edgectl %s %s; see --help)", c.name, err, c.name, argsUsage))
	}
	rest := fs.Args()
	if len(rest) < minArgs || (maxArgs >= 0 && len(rest) > maxArgs) {
		return nil, c.usageError(fmt.Sprintf("usage: edgectl %s %s", c.name, argsUsage))
	}
	return rest, -1
}

// flagUsage is fs.Usage: it keeps the synopsis and the flags for parse,
// which prints them on stdout when help was asked for (-h, --help) and
// points at --help after a bad flag.
func (c *cli) flagUsage(fs *flag.FlagSet) {
	var b strings.Builder
	fmt.Fprintf(&b, "usage: edgectl %s %s\n", c.name, c.argsUsage)
	out := fs.Output()
	fs.SetOutput(&b)
	fs.PrintDefaults()
	fs.SetOutput(out)
	c.help = b.String()
}

// usageError reports a bad command line: line on stderr and, with --json,
// the same as a JSON document on stdout; exit 2.
func (c *cli) usageError(line string) int {
	fmt.Fprintln(c.stderr, line)
	if c.json {
		c.emitError(errorJSON{Command: c.name, Kind: "usage", Message: line, ExitCode: exitUsage})
	}
	return exitUsage
}

// wantsJSON reports whether args ask for JSON output, for errors found
// before the flags are parsed.
func wantsJSON(args []string) bool {
	for i, a := range args {
		switch a {
		case "--", "-":
			return false
		case "--json", "-json", "--json=true", "-json=true", "--output=json", "-output=json":
			return true
		case "--output", "-output":
			if i+1 < len(args) && args[i+1] == "json" {
				return true
			}
		}
	}
	return false
}

// interleave moves flags after positional arguments to the front, so
// `edgectl keys sign device-id --json` works as people type it.
func interleave(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if strings.HasPrefix(a, "-") && a != "-" {
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if strings.Contains(name, "=") {
				continue
			}
			if f := fs.Lookup(name); f != nil {
				if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
					continue
				}
				if i+1 < len(args) {
					flags = append(flags, args[i+1])
					i++
				}
			}
			continue
		}
		pos = append(pos, a)
	}
	return append(flags, pos...)
}

// emit prints v as indented JSON.
func (c *cli) emit(v any) int {
	c.emitted = true
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return c.fail(fmt.Errorf("write JSON: %w", err))
	}
	return exitOK
}

// errorJSON is what --json prints on stdout when a command fails: the same
// facts as the line on stderr, so a script reading stdout always gets one
// JSON document (docs/edgectl.md).
type errorJSON struct {
	Command  string `json:"command"`
	Kind     string `json:"kind"` // usage, not_authorized, unavailable, not_found, invalid_argument, already_exists, read_only, config, failed
	Message  string `json:"message"`
	Hint     string `json:"hint,omitempty"`
	ExitCode int    `json:"exit_code"`
}

// emitError prints e as {"error": e} unless a document was printed already.
func (c *cli) emitError(e errorJSON) {
	if c.emitted {
		return
	}
	c.emit(map[string]errorJSON{"error": e})
}

// table prints rows under a header, aligned.
func (c *cli) table(header []string, rows [][]string) {
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

// fail prints err as one line that says what failed and how to go on (and,
// with --json, as a JSON document on stdout), and returns the exit code for
// its kind.
func (c *cli) fail(err error) int {
	if err == nil {
		return exitOK
	}
	msg := fault.Message(err)
	if msg == "" {
		msg = err.Error()
	}
	var fe *fault.Error
	kind, jkind, code := "", "failed", exitFailed
	if errors.As(err, &fe) {
		switch fe.Kind {
		case fault.NotAuthorized:
			kind, jkind, code = "not authorized", "not_authorized", exitNotAuthz
		case fault.Unavailable:
			kind, jkind, code = "unavailable", "unavailable", exitUnavailable
		case fault.NotFound:
			kind, jkind, code = "not found", "not_found", exitNotFound
		case fault.InvalidArgs:
			kind, jkind = "invalid argument", "invalid_argument"
		case fault.AlreadyExists:
			kind, jkind = "already exists", "already_exists"
		case fault.ReadOnly:
			kind, jkind = "read-only", "read_only"
		case fault.NotSupported:
			kind, jkind = "not supported", "not_supported"
		}
	} else {
		msg = err.Error()
	}
	var ce *configError
	if errors.As(err, &ce) {
		jkind, code = "config", exitConfig
	}
	msg = oneLine(msg)
	hint := c.hint(err)
	line := "edgectl " + c.name + ": "
	if kind != "" {
		line += kind + ": "
	}
	line += msg
	if hint != "" {
		line += " (" + hint + ")"
	}
	fmt.Fprintln(c.stderr, line)
	if c.json {
		c.emitError(errorJSON{Command: c.name, Kind: jkind, Message: msg, Hint: hint, ExitCode: code})
	}
	return code
}

// hint says what to do next for the error's kind.
func (c *cli) hint(err error) string {
	var be *busError
	switch {
	case errors.As(err, &be):
		return be.hint()
	case fault.Is(err, fault.NotAuthorized) && c.action != "":
		return fmt.Sprintf("polkit denied %s: run as root, or grant this user the action with a [[principal]] in the super-config or a polkit rule", c.action)
	case fault.Is(err, fault.NotAuthorized):
		return "run as root, or grant this user the polkit action with a [[principal]] in the super-config"
	case fault.Is(err, fault.Unavailable) && c.service != "":
		return fmt.Sprintf("is %s running? try `systemctl status %s` and `edgectl check`", c.service, c.service)
	}
	return ""
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// subcommands dispatches args[0] among subs. `GROUP --help` prints the
// subcommands on stdout; no subcommand or an unknown one is a usage error.
func subcommands(ctx context.Context, group string, args []string, stdout, stderr io.Writer, subs map[string]func(ctx context.Context, c *cli, args []string) int) int {
	names := make([]string, 0, len(subs))
	for n := range subs {
		names = append(names, n)
	}
	sort.Strings(names)
	c := &cli{name: group, stdout: stdout, stderr: stderr, json: wantsJSON(args)}
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		fmt.Fprintf(stdout, "usage: edgectl %s %s\n(`edgectl %s SUBCOMMAND --help` for its flags; see docs/edgectl.md)\n", group, strings.Join(names, "|"), group)
		return exitOK
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return c.usageError(fmt.Sprintf("usage: edgectl %s %s", group, strings.Join(names, "|")))
	}
	run, ok := subs[args[0]]
	if !ok {
		return c.usageError(fmt.Sprintf("edgectl %s: unknown subcommand %q (use one of: %s)", group, args[0], strings.Join(names, ", ")))
	}
	return run(ctx, &cli{name: group + " " + args[0], stdout: stdout, stderr: stderr}, args[1:])
}

// parseThenOpen is the start of a command of one service: it parses args
// against fs as parse does and, when they are good, opens the service's
// client for action with open (certsClient, keysClient...). The code is -1,
// or the exit code of what it reported.
func parseThenOpen[C any](c *cli, fs *flag.FlagSet, args []string, minArgs, maxArgs int, argsUsage string,
	open func(c *cli, action string) (C, int), action string) (rest []string, client C, code int) {
	if rest, code = c.parse(fs, args, minArgs, maxArgs, argsUsage); code >= 0 {
		return nil, client, code
	}
	client, code = open(c, action)
	return rest, client, code
}

// connect opens the system bus (or DBUS_SYSTEM_BUS_ADDRESS's).
// serviceClient connects to the system bus and makes service's client
// with newClient; service and action (the polkit action the call needs)
// go into the hint of a failure. The code is -1, or the exit code of the
// failure it reported.
func serviceClient[C any](c *cli, service, action string, newClient func(*godbus.Conn) C) (C, int) {
	c.service, c.action = service, action
	conn, err := connect()
	if err != nil {
		var none C
		return none, c.fail(err)
	}
	return newClient(conn), -1
}

func connect() (*godbus.Conn, error) {
	conn, err := bus.ConnectSystemBus()
	if err != nil {
		be := &busError{address: os.Getenv("DBUS_SYSTEM_BUS_ADDRESS"), err: err}
		return nil, fault.Wrap(fault.Unavailable, be, "%s", be.Error())
	}
	return conn, nil
}

// busError is a system bus that cannot be reached: the one cause of the
// failure, so the hint is about the bus and not about a service.
type busError struct {
	address string // DBUS_SYSTEM_BUS_ADDRESS, "" for the default
	err     error
}

// defaultSystemBus is where libdbus and godbus look without DBUS_SYSTEM_BUS_ADDRESS.
const defaultSystemBus = "unix:path=/var/run/dbus/system_bus_socket"

func (e *busError) Error() string {
	cause := e.err
	if inner := errors.Unwrap(cause); inner != nil {
		cause = inner // drop bus.ConnectSystemBus's "connect to the system bus"
	}
	addr := e.address
	if addr == "" {
		addr = defaultSystemBus
	}
	return fmt.Sprintf("cannot reach the system bus at %s: %v", addr, cause)
}

func (e *busError) Unwrap() error { return e.err }

func (e *busError) hint() string {
	if e.address != "" {
		return "is the bus that DBUS_SYSTEM_BUS_ADDRESS names running? unset the variable to use the default one"
	}
	return "is dbus running? try `systemctl status dbus`"
}

// configError marks an invalid configuration (exit code 3).
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

// isSet reports whether flag name was given on the command line.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// notFound names the missing entity when the bus only said that an object
// path does not exist.
func notFound(err error, what, id, listCmd string) error {
	if fault.Is(err, fault.NotFound) {
		return fault.Wrap(fault.NotFound, err, "%s %q does not exist (see `%s`)", what, id, listCmd)
	}
	return err
}
