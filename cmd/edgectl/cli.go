package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/internal/fault"
)

// cli is one invocation of a (sub)command: its name for messages, where
// output goes, and the output format.
type cli struct {
	name           string // "keys sign"
	stdout, stderr io.Writer
	json           bool
	service        string // the service the command talks to, for hints
	action         string // the polkit action it needs, for hints
}

// flags makes a FlagSet for c with the shared output flags (--json, and
// --output json as in iotedge).
func (c *cli) flags() *flag.FlagSet {
	fs := flag.NewFlagSet("edgectl "+c.name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
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
	if err := fs.Parse(interleave(fs, args)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, exitOK
		}
		return nil, exitUsage
	}
	rest := fs.Args()
	if len(rest) < minArgs || (maxArgs >= 0 && len(rest) > maxArgs) {
		fmt.Fprintf(c.stderr, "usage: edgectl %s %s\n", c.name, argsUsage)
		return nil, exitUsage
	}
	return rest, -1
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
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return c.fail(fmt.Errorf("write JSON: %w", err))
	}
	return exitOK
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

// fail prints err as one line that says what failed and how to go on, and
// returns the exit code for its kind.
func (c *cli) fail(err error) int {
	if err == nil {
		return exitOK
	}
	msg := fault.Message(err)
	if msg == "" {
		msg = err.Error()
	}
	var fe *fault.Error
	kind, code := "", exitFailed
	if errors.As(err, &fe) {
		switch fe.Kind {
		case fault.NotAuthorized:
			kind, code = "not authorized", exitNotAuthz
		case fault.Unavailable:
			kind, code = "unavailable", exitUnavailable
		case fault.NotFound:
			kind, code = "not found", exitNotFound
		case fault.InvalidArgs:
			kind = "invalid argument"
		case fault.AlreadyExists:
			kind = "already exists"
		case fault.ReadOnly:
			kind = "read-only"
		}
	} else {
		msg = err.Error()
	}
	var ce *configError
	if errors.As(err, &ce) {
		code = exitConfig
	}
	line := "edgectl " + c.name + ": "
	if kind != "" {
		line += kind + ": "
	}
	line += oneLine(msg)
	if hint := c.hint(err); hint != "" {
		line += " (" + hint + ")"
	}
	fmt.Fprintln(c.stderr, line)
	return code
}

// hint says what to do next for the error's kind.
func (c *cli) hint(err error) string {
	switch {
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

// subcommands dispatches args[0] among subs.
func subcommands(ctx context.Context, group string, args []string, stdout, stderr io.Writer, subs map[string]func(ctx context.Context, c *cli, args []string) int) int {
	names := make([]string, 0, len(subs))
	for n := range subs {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintf(stderr, "usage: edgectl %s %s\n", group, strings.Join(names, "|"))
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	run, ok := subs[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "edgectl %s: unknown subcommand %q (use one of: %s)\n", group, args[0], strings.Join(names, ", "))
		return exitUsage
	}
	return run(ctx, &cli{name: group + " " + args[0], stdout: stdout, stderr: stderr}, args[1:])
}

// connect opens the system bus (or DBUS_SYSTEM_BUS_ADDRESS's).
func connect() (*godbus.Conn, error) {
	conn, err := bus.ConnectSystemBus()
	if err != nil {
		return nil, fault.Wrap(fault.Unavailable, err, "cannot reach the system bus: %v (is dbus running? is DBUS_SYSTEM_BUS_ADDRESS right?)", err)
	}
	return conn, nil
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
