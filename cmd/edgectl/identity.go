package main

import (
	"context"
	"fmt"
	"io"
	"sort"

	"github.com/edgev2/edgev2/identity/client"
)

func runIdentity(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return subcommands(ctx, "identity", args, stdout, stderr, map[string]func(context.Context, *cli, []string) int{
		"show": identityShow, "reprovision": identityReprovision,
	})
}

func identityClient(c *cli, action string) (*client.Client, int) {
	c.service, c.action = "edgev2-identityd", action
	conn, err := connect()
	if err != nil {
		return nil, c.fail(err)
	}
	return client.New(conn), -1
}

// dictJSON turns an a{sv} into plain JSON values; keys that carry secrets
// are left out by the service already.
func dictJSON(d client.Dict) map[string]any {
	out := make(map[string]any, len(d))
	for k, v := range d {
		out[k] = v.Value()
	}
	return out
}

func identityShow(ctx context.Context, c *cli, args []string) int {
	if _, code := c.parse(c.flags(), args, 0, 0, "[--json]"); code >= 0 {
		return code
	}
	ic, code := identityClient(c, "org.edgev2.identity.read")
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
	out := map[string]any{"state": state, "provisioning": dictJSON(info)}
	var dev client.Dict
	if state == "provisioned" {
		if dev, err = ic.DeviceIdentity(ctx); err != nil {
			return c.fail(err)
		}
		out["device"] = dictJSON(dev)
	}
	if c.json {
		return c.emit(out)
	}
	fmt.Fprintf(c.stdout, "state: %s\n", state)
	printDict(c.stdout, "provisioning", info)
	if dev != nil {
		printDict(c.stdout, "device", dev)
	}
	return exitOK
}

func printDict(w io.Writer, title string, d client.Dict) {
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintf(w, "%s:\n", title)
	for _, k := range keys {
		fmt.Fprintf(w, "  %-20s %v\n", k+":", d[k].Value())
	}
}

func identityReprovision(ctx context.Context, c *cli, args []string) int {
	if _, code := c.parse(c.flags(), args, 0, 0, "[--json]"); code >= 0 {
		return code
	}
	ic, code := identityClient(c, "org.edgev2.identity.reprovision")
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
