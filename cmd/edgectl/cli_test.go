package main

import (
	"bytes"
	"context"
	"flag"
	"reflect"
	"strings"
	"testing"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/modrt/client"
)

func TestInterleaveAcceptsFlagsAfterArguments(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.Bool("json", false, "")
	fs.String("mechanism", "", "")
	cases := []struct{ in, want []string }{
		{[]string{"device-id", "--json"}, []string{"--json", "device-id"}},
		{[]string{"device-id", "--mechanism", "ecdsa", "--json"}, []string{"--mechanism", "ecdsa", "--json", "device-id"}},
		{[]string{"--mechanism=ecdsa", "k"}, []string{"--mechanism=ecdsa", "k"}},
		{[]string{"k", "--", "--json"}, []string{"k", "--json"}},
	}
	for _, c := range cases {
		if got := interleave(fs, c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("interleave(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestDispatchRejectsUnknownCommandsWithUsageExit(t *testing.T) {
	var out, errOut bytes.Buffer
	cases := []struct {
		args []string
		code int
		msg  string
	}{
		{nil, exitUsage, "usage: edgectl"},
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"keys", "explode"}, exitUsage, `unknown subcommand "explode"`},
		{[]string{"keys", "sign"}, exitUsage, "usage: edgectl keys sign ID"},
		{[]string{"check", "--output", "yaml"}, exitUsage, `unknown output format "yaml"`},
	}
	for _, c := range cases {
		out.Reset()
		errOut.Reset()
		if code := dispatch(context.Background(), c.args, &out, &errOut); code != c.code || !strings.Contains(errOut.String(), c.msg) {
			t.Errorf("edgectl %q: exit %d, stderr %q; want %d and %q", c.args, code, errOut.String(), c.code, c.msg)
		}
	}
	// Help was asked for: it goes to stdout (`edgectl help | less`), exit 0.
	out.Reset()
	errOut.Reset()
	if code := dispatch(context.Background(), []string{"help"}, &out, &errOut); code != exitOK || !strings.Contains(out.String(), "support-bundle") || errOut.Len() != 0 {
		t.Errorf("edgectl help: exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
}

func TestFailPrintsOneLineWithKindHintAndExitCode(t *testing.T) {
	cases := []struct {
		err  error
		code int
		want []string
	}{
		{fault.New(fault.NotAuthorized, "not allowed to use key \"k\""), exitNotAuthz, []string{"not authorized", "org.edgev2.keys.use", "polkit"}},
		{fault.New(fault.Unavailable, "The name org.edgev2.Keys1 was not provided\nby any .service files"), exitUnavailable, []string{"unavailable", "systemctl status edgev2-keyd"}},
		{fault.New(fault.NotFound, "key \"x\" not found"), exitNotFound, []string{"not found", `"x"`}},
		{&configError{fault.New(fault.InvalidArgs, "bad")}, exitConfig, []string{"bad"}},
	}
	for _, c := range cases {
		var errOut bytes.Buffer
		cl := &cli{name: "keys sign", stderr: &errOut, service: "edgev2-keyd", action: "org.edgev2.keys.use"}
		code := cl.fail(c.err)
		line := errOut.String()
		if code != c.code || strings.Count(line, "\n") != 1 || !strings.HasPrefix(line, "edgectl keys sign: ") {
			t.Errorf("fail(%v): exit %d, %q", c.err, code, line)
		}
		for _, w := range c.want {
			if !strings.Contains(line, w) {
				t.Errorf("fail(%v) = %q, lacks %q", c.err, line, w)
			}
		}
	}
}

func TestProgressBarAndPlainLines(t *testing.T) {
	cases := []struct {
		done, total uint64
		want        string
	}{
		{0, 100, "[>" + strings.Repeat(" ", barWidth-1) + "]"},
		{50, 100, "[" + strings.Repeat("=", barWidth/2) + ">" + strings.Repeat(" ", barWidth/2-1) + "]"},
		{100, 100, "[" + strings.Repeat("=", barWidth) + "]"},
		{200, 100, "[" + strings.Repeat("=", barWidth) + "]"},
		{5, 0, "[>" + strings.Repeat(" ", barWidth-1) + "]"},
	}
	for _, c := range cases {
		if got := bar(c.done, c.total); got != c.want {
			t.Errorf("bar(%d, %d) = %q, want %q", c.done, c.total, got, c.want)
		}
	}
	var buf bytes.Buffer
	p := newProgress(&buf, "reg/img:1")
	p.update(client.Progress{Ref: "reg/img:1", Done: 1536, Total: 3 << 20})
	p.finish(true)
	if got := buf.String(); got != "pull reg/img:1: 1.5 KiB of 3.0 MiB\n" {
		t.Fatalf("plain progress = %q", got)
	}
}

func TestHostPortDefaultsTo443(t *testing.T) {
	cases := map[string]string{
		"https://global.azure-devices-provisioning.net": "global.azure-devices-provisioning.net:443",
		"https://127.0.0.1:8443/.well-known/est":        "127.0.0.1:8443",
		"myhub.azure-devices.net":                       "myhub.azure-devices.net:443",
		"127.0.0.1:4433":                                "127.0.0.1:4433",
		"":                                              "",
	}
	for in, want := range cases {
		if got := hostPort(in); got != want {
			t.Errorf("hostPort(%q) = %q, want %q", in, got, want)
		}
	}
}
