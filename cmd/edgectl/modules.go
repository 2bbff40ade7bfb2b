package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	rtapi "github.com/edgev2/edgev2/modrt/api"
	"github.com/edgev2/edgev2/modrt/client"
	"github.com/edgev2/edgev2/modrt/logstore"
)

func runModules(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return subcommands(ctx, "modules", args, stdout, stderr, map[string]func(context.Context, *cli, []string) int{
		"list": modulesList, "logs": modulesLogs, "start": moduleAction("start"), "stop": moduleAction("stop"),
		"restart": moduleAction("restart"), "rm": moduleAction("rm"),
	})
}

func modulesClient(c *cli, action string) (*client.Client, int) {
	return serviceClient(c, "edgev2-modrtd", action, client.New)
}

func modulesList(ctx context.Context, c *cli, args []string) int {
	_, mc, code := parseThenOpen(c, c.flags(), args, 0, 0, "[--json]", modulesClient, rtapi.ActionRead)
	if code >= 0 {
		return code
	}
	names, err := mc.ListModules(ctx)
	if err != nil {
		return c.fail(err)
	}
	out := make([]client.Module, 0, len(names))
	for _, n := range names {
		m, err := mc.Module(ctx, n)
		if err != nil {
			return c.fail(fmt.Errorf("module %q: %w", n, err))
		}
		out = append(out, m)
	}
	if c.json {
		return c.emit(out)
	}
	rows := make([][]string, 0, len(out))
	for _, m := range out {
		started := "-"
		if !m.StartedAt.IsZero() {
			started = m.StartedAt.Format(time.RFC3339)
		}
		rows = append(rows, []string{m.Name, m.Status, strconv.Itoa(int(m.ExitCode)), strconv.Itoa(int(m.RestartCount)), started, m.Image})
	}
	c.table([]string{"NAME", "STATUS", "EXIT", "RESTARTS", "STARTED", "IMAGE"}, rows)
	return exitOK
}

func moduleAction(verb string) func(context.Context, *cli, []string) int {
	return func(ctx context.Context, c *cli, args []string) int {
		fs := c.flags()
		timeout := fs.Duration("timeout", 0, "stop: time before SIGKILL (default the runtime's, 10s)")
		rest, mc, code := parseThenOpen(c, fs, args, 1, 1, "NAME [--json]", modulesClient, rtapi.ActionManage)
		if code >= 0 {
			return code
		}
		name := rest[0]
		var err error
		switch verb {
		case "start":
			err = mc.Start(ctx, name)
		case "stop":
			err = mc.Stop(ctx, name, *timeout)
		case "restart":
			err = mc.Restart(ctx, name)
		case "rm":
			err = mc.Remove(ctx, name)
		}
		if err != nil {
			return c.fail(notFound(err, "module", name, "edgectl modules list"))
		}
		if c.json {
			return c.emit(map[string]string{"module": name, "action": verb, "result": "ok"})
		}
		fmt.Fprintf(c.stdout, "module %s: %s done\n", name, verb)
		return exitOK
	}
}

// followInterval is how often `logs -f` asks for new lines: the runtime's
// GetLogs has no follow option, so edgectl polls and prints what is new.
const followInterval = time.Second

func modulesLogs(ctx context.Context, c *cli, args []string) int {
	fs := c.flags()
	follow := fs.Bool("f", false, "keep printing new lines until interrupted")
	tail := fs.Int("tail", 0, "only the last N lines")
	since := fs.Duration("since", 0, "only lines newer than this (e.g. 10m)")
	ts := fs.Bool("timestamps", false, "prefix lines with their time")
	rest, mc, code := parseThenOpen(c, fs, args, 1, 1, "NAME [-f] [--tail N] [--since 10m] [--timestamps]", modulesClient, rtapi.ActionRead)
	if code >= 0 {
		return code
	}
	name := rest[0]
	o := client.LogOptions{Tail: *tail, Timestamps: *ts}
	if *since > 0 {
		o.Since = time.Now().Add(-*since)
	}
	text, err := moduleLogText(ctx, mc, name, o)
	if err != nil {
		return c.fail(notFound(err, "module", name, "edgectl modules list"))
	}
	if c.json && !*follow {
		return c.emit(map[string]string{"module": name, "logs": text})
	}
	fmt.Fprint(c.stdout, text)
	if !*follow {
		return exitOK
	}
	// Follow: ask for everything since the first read and print the part
	// not printed yet (the runtime's logs only grow, or rotate).
	o.Tail = 0
	printed := ""
	if all, err := moduleLogText(ctx, mc, name, o); err == nil {
		printed = all
	}
	tick := time.NewTicker(followInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return exitOK
		case <-tick.C:
		}
		all, err := moduleLogText(ctx, mc, name, o)
		if err != nil {
			if ctx.Err() != nil {
				return exitOK
			}
			return c.fail(err)
		}
		switch {
		case len(all) >= len(printed) && all[:len(printed)] == printed:
			fmt.Fprint(c.stdout, all[len(printed):])
		default: // rotated
			fmt.Fprint(c.stdout, all)
		}
		printed = all
	}
}

func moduleLogText(ctx context.Context, mc *client.Client, name string, o client.LogOptions) (string, error) {
	rc, err := mc.GetLogs(ctx, name, o)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	text, err := logstore.FramedText(rc)
	if err != nil {
		return text, fmt.Errorf("read logs of %s: %w", name, err)
	}
	return text, nil
}
