package main

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/edgev2/edgev2/internal/testenv"
)

func checkWidth(t *testing.T, out string) {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if n := utf8.RuneCountInString(l); n > width {
			t.Errorf("line of %d columns (max %d): %q", n, width, l)
		}
	}
}

func TestStepPrinterPlainLinesAlignedWithin100Columns(t *testing.T) {
	var out bytes.Buffer
	sp := newStepPrinter(&out)
	if sp.tty {
		t.Fatal("a bytes.Buffer is taken for a terminal")
	}
	longDetail := "11 checks, 0 errors, 1 warnings (warning cloud.est: the EST server at https://127.0.0.1:39221/.well-known/est answers, but its certificate expires in 2 days)"
	if err := sp.run("start a private system-like dbus-daemon", func() (string, error) { return "unix:path=/tmp/bus", nil }); err != nil {
		t.Fatal(err)
	}
	if err := sp.run("edgectl check: the demo device is healthy", func() (string, error) { return longDetail, nil }); err != nil {
		t.Fatal(err)
	}
	err := sp.run("the module's SAS token is accepted by the hub (device-to-cloud message) and more words to wrap", func() (string, error) {
		return "", errors.New("the hub answered 401 Unauthorized\nsecond line of the error")
	})
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("a failing step returned %v", err)
	}
	got := out.String()
	checkWidth(t, got)
	lines := strings.Split(got, "\n")
	// Each step: a start line, then the result with the time right-aligned
	// and the name in one column.
	want := []string{
		"  ..              start a private system-like dbus-daemon",
		"  ok       0.00s  start a private system-like dbus-daemon",
		"                    unix:path=/tmp/bus",
		"  ..              edgectl check: the demo device is healthy",
		"  ok       0.00s  edgectl check: the demo device is healthy",
	}
	for i, w := range want {
		if lines[i] != w {
			t.Errorf("line %d = %q, want %q", i, lines[i], w)
		}
	}
	for _, l := range lines[5:7] {
		if !strings.HasPrefix(l, strings.Repeat(" ", detailIndent)) || strings.HasPrefix(l, strings.Repeat(" ", detailIndent+1)) {
			t.Errorf("detail line not in the detail column: %q", l)
		}
	}
	if !strings.Contains(got, "  FAIL     0.00s  the module's SAS token") || !strings.Contains(got, "second line of the error") {
		t.Errorf("the failure is not shown with its error:\n%s", got)
	}
	if len(sp.steps) != 3 || sp.steps[2].ok {
		t.Errorf("steps = %+v", sp.steps)
	}
}

func TestStepPrinterShowsASpinnerWhileAStepRunsOnATerminal(t *testing.T) {
	var out testenv.Buffer
	sp := &stepPrinter{w: &out, tty: true, tick: time.Millisecond}
	err := sp.run("import the module image into containerd", func() (string, error) {
		// Run until the spinner has been redrawn at least twice.
		if !testenv.WaitFor(20*time.Second, func() bool { return strings.Contains(out.String(), spinner[2]) }) {
			return "", fmt.Errorf("no spinner redraw: %q", out.String())
		}
		return "edgev2.demo/signer:1", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if !strings.HasPrefix(got, "  "+spinner[0]+strings.Repeat(" ", nameIndent-3)+"import the module image") {
		t.Errorf("the first thing shown is not the spinner line: %q", got)
	}
	if !strings.Contains(got, "\r\033[K  "+spinner[1]) {
		t.Errorf("the spinner line is not redrawn in place: %q", got)
	}
	// What stays on the screen: the text after the last line clear.
	final := got[strings.LastIndex(got, "\r\033[K")+len("\r\033[K"):]
	if !strings.HasPrefix(final, "  ok   ") || !strings.Contains(final, "s  import the module image into containerd\n") ||
		!strings.HasSuffix(final, strings.Repeat(" ", detailIndent)+"edgev2.demo/signer:1\n") {
		t.Errorf("the result does not replace the spinner: %q", final)
	}
	for _, l := range strings.Split(strings.ReplaceAll(got, "\r\033[K", "\n"), "\n") {
		if n := utf8.RuneCountInString(l); n > width {
			t.Errorf("spinner line of %d columns: %q", n, l)
		}
	}
}

func TestWrapKeepsEveryWordWithinTheWidth(t *testing.T) {
	cases := []struct {
		in   string
		n    int
		want []string
	}{
		{"a bb ccc", 4, []string{"a bb", "ccc"}},
		{"abcdefghij", 4, []string{"abcd", "efgh", "ij"}},
		{"x abcdefghij", 4, []string{"x", "abcd", "efgh", "ij"}},
		{"", 4, nil},
		{"hub → device é", 6, []string{"hub →", "device", "é"}},
	}
	for _, c := range cases {
		got := wrap(c.in, c.n)
		if strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("wrap(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}

func TestSecondsFitsTheTimeColumn(t *testing.T) {
	for _, d := range []time.Duration{0, 999 * time.Millisecond, 37 * time.Second, 999 * time.Second, 1000 * time.Second, 99 * time.Minute, 5 * time.Hour} {
		if s := seconds(d); len(s) > timeWidth {
			t.Errorf("seconds(%v) = %q, wider than %d", d, s, timeWidth)
		}
	}
}
