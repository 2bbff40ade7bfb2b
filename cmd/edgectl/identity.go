package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/edgev2/edgev2/identity/api"
	"github.com/edgev2/edgev2/identity/client"
)

func runIdentity(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return subcommands(ctx, "identity", args, stdout, stderr, map[string]func(context.Context, *cli, []string) int{
		"show": identityShow, "reprovision": identityReprovision,
	})
}

func identityClient(c *cli, action string) (*client.Client, int) {
	return serviceClient(c, "edgev2-identityd", action, client.New)
}

// dictJSON turns an a{sv} into plain JSON values; keys that carry secrets
// are left out by the service already.
func dictJSON(d map[string]godbus.Variant) map[string]any {
	out := make(map[string]any, len(d))
	for k, v := range d {
		out[k] = v.Value()
	}
	return out
}

func identityShow(ctx context.Context, c *cli, args []string) int {
	_, ic, code := parseThenOpen(c, c.flags(), args, 0, 0, "[--json]", identityClient, "org.edgev2.identity.read")
	if code >= 0 {
		return code
	}
	state, err := ic.State(ctx)
	if err != nil {
		return c.fail(err)
	}
	info, err := ic.ProvisioningInfo(ctx)
	if err != nil {
		return c.fail(err)
	}
	// Shown as the a{sv} the service sent: every key, by its name.
	infoDict := api.ToDict(info)
	out := map[string]any{"state": state, "provisioning": dictJSON(infoDict)}
	var devDict map[string]godbus.Variant
	if state == "provisioned" {
		dev, err := ic.DeviceIdentity(ctx)
		if err != nil {
			return c.fail(err)
		}
		devDict = api.ToDict(dev)
		out["device"] = dictJSON(devDict)
	}
	if c.json {
		return c.emit(out)
	}
	fmt.Fprintf(c.stdout, "state: %s\n", state)
	now := time.Now()
	printDict(c.stdout, "provisioning", infoDict, now)
	if devDict != nil {
		printDict(c.stdout, "device", devDict, now)
	}
	return exitOK
}

// printDict prints an a{sv} for people: times (keys ending in _at, Unix
// seconds on the bus) as RFC 3339 with their age, durations (keys ending
// in _s or _secs) as durations. --json keeps the numbers.
func printDict(w io.Writer, title string, d map[string]godbus.Variant, now time.Time) {
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintf(w, "%s:\n", title)
	for _, k := range keys {
		fmt.Fprintf(w, "  %-20s %s\n", k+":", humanValue(k, d[k].Value(), now))
	}
}

// humanValue formats one a{sv} value by its key's naming convention.
func humanValue(key string, v any, now time.Time) string {
	n, isNum := unsigned(v)
	switch {
	case isNum && strings.HasSuffix(key, "_at"):
		if n == 0 {
			return "never"
		}
		t := time.Unix(int64(n), 0).UTC()
		return t.Format(time.RFC3339) + " (" + age(t, now) + ")"
	case isNum && (strings.HasSuffix(key, "_s") || strings.HasSuffix(key, "_secs")):
		return (time.Duration(n) * time.Second).String()
	}
	return fmt.Sprint(v)
}

// unsigned returns v as a non-negative integer, if it is one.
func unsigned(v any) (uint64, bool) {
	switch x := v.(type) {
	case uint64:
		return x, true
	case uint32:
		return uint64(x), true
	case int64:
		return uint64(x), x >= 0
	case int32:
		return uint64(x), x >= 0
	}
	return 0, false
}

// age says how long ago t was (or how far ahead, for a clock that is behind).
func age(t, now time.Time) string {
	d := now.Sub(t)
	suffix := " ago"
	if d < 0 {
		d, suffix = -d, " from now"
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds%s", int(d/time.Second), suffix)
	case d < time.Hour:
		return fmt.Sprintf("%dm%s", int(d/time.Minute), suffix)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%dm%s", int(d/time.Hour), int(d%time.Hour/time.Minute), suffix)
	}
	return fmt.Sprintf("%d days%s", int(d/(24*time.Hour)), suffix)
}

func identityReprovision(ctx context.Context, c *cli, args []string) int {
	_, ic, code := parseThenOpen(c, c.flags(), args, 0, 0, "[--json]", identityClient, "org.edgev2.identity.reprovision")
	if code >= 0 {
		return code
	}
	if err := ic.Reprovision(ctx); err != nil {
		return c.fail(err)
	}
	state, err := ic.State(ctx)
	if err != nil {
		return c.fail(err)
	}
	if c.json {
		return c.emit(map[string]string{"state": state})
	}
	fmt.Fprintf(c.stdout, "reprovisioning started; state: %s\n", state)
	return exitOK
}
