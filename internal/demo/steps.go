package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// width is the widest line the demo prints.
const width = 100

// Columns of a step line: status, time, then the name; details go below
// the name, a little further in.
const (
	statusWidth  = 4
	timeWidth    = 8
	nameIndent   = 2 + statusWidth + 2 + timeWidth + 2
	detailIndent = nameIndent + 2
)

type step struct {
	name string
	took time.Duration
	ok   bool
}

// stepPrinter runs the demo's steps and prints each in aligned columns
// within width: on a terminal a spinner line with the time so far shows
// what is running and is replaced by the result; elsewhere (pipes, CI logs)
// a plain line says what starts and another how it ended.
type stepPrinter struct {
	w     io.Writer
	tty   bool
	steps []step
	tick  time.Duration // spinner redraw interval
}

func newStepPrinter(w io.Writer) *stepPrinter {
	return &stepPrinter{w: w, tty: isTerminal(w), tick: 100 * time.Millisecond}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

var spinner = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

// run runs one step and prints it.
func (p *stepPrinter) run(name string, fn func() (string, error)) error {
	start := time.Now()
	stop := p.started(name, start)
	detail, err := fn()
	took := time.Since(start)
	stop()
	p.steps = append(p.steps, step{name, took, err == nil})
	if err != nil {
		p.result("FAIL", name, took, err.Error())
		return fmt.Errorf("%s: %w", name, err)
	}
	p.result("ok", name, took, detail)
	return nil
}

// started shows that name is running and returns what ends that display.
func (p *stepPrinter) started(name string, start time.Time) (stop func()) {
	if !p.tty {
		fmt.Fprint(p.w, p.lines("..", "", name, ""))
		return func() {}
	}
	first := p.lines(spinner[0], "", name, "")
	first = first[:strings.IndexByte(first, '\n')]
	fmt.Fprint(p.w, first)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(p.tick)
		defer t.Stop()
		for i := 1; ; i++ {
			select {
			case <-done:
				fmt.Fprint(p.w, "\r\033[K")
				return
			case <-t.C:
				line := p.lines(spinner[i%len(spinner)], seconds(time.Since(start)), name, "")
				fmt.Fprint(p.w, "\r\033[K"+line[:strings.IndexByte(line, '\n')])
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func (p *stepPrinter) result(status, name string, took time.Duration, detail string) {
	fmt.Fprint(p.w, p.lines(status, seconds(took), name, detail))
}

// seconds formats a step's time for the time column.
func seconds(d time.Duration) string {
	if d >= 100*time.Minute {
		return d.Round(time.Minute).String()
	}
	if d >= 1000*time.Second {
		return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

// lines lays a step out: "  STAT  TIME  name", the name wrapped under
// itself, then the detail wrapped under the name, every line within width.
func (p *stepPrinter) lines(status, took, name, detail string) string {
	var b strings.Builder
	head := fmt.Sprintf("  %-*s  %*s  ", statusWidth, status, timeWidth, took)
	for i, l := range wrap(name, width-nameIndent) {
		if i == 0 {
			b.WriteString(head + l + "\n")
		} else {
			b.WriteString(strings.Repeat(" ", nameIndent) + l + "\n")
		}
	}
	for _, para := range strings.Split(strings.TrimSpace(detail), "\n") {
		for _, l := range wrap(para, width-detailIndent) {
			b.WriteString(strings.Repeat(" ", detailIndent) + l + "\n")
		}
	}
	return b.String()
}

// paragraph prints text wrapped within width.
func (p *stepPrinter) paragraph(text string) {
	for _, l := range wrap(text, width) {
		fmt.Fprintln(p.w, l)
	}
}

// wrap breaks s into lines of at most n columns (runes), at spaces where it
// can and inside words longer than a line.
func wrap(s string, n int) []string {
	var out []string
	line := []rune{}
	for _, word := range strings.Fields(s) {
		w := []rune(word)
		if len(line) > 0 && len(line)+1+len(w) > n {
			out = append(out, string(line))
			line = line[:0]
		}
		if len(line) > 0 {
			line = append(line, ' ')
		}
		for len(line)+len(w) > n {
			cut := n - len(line)
			out = append(out, string(append(line, w[:cut]...)))
			line, w = line[:0], w[cut:]
		}
		line = append(line, w...)
	}
	if len(line) > 0 {
		out = append(out, string(line))
	}
	return out
}

// total is the time of all steps.
func (p *stepPrinter) total() time.Duration {
	var t time.Duration
	for _, s := range p.steps {
		t += s.took
	}
	return t
}
