package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/modrt/client"
)

// openPTY returns a pseudo-terminal's two ends.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		testenv.Missing(t, "/dev/ptmx", fmt.Sprintf("a pseudo-terminal proves the progress bar: %v", err))
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); m.Close() })
	return m, s
}

func TestProgressRedrawsABarOnATerminal(t *testing.T) {
	m, s := openPTY(t)
	p := newProgress(s, "reg/img:1")
	if !p.tty {
		t.Fatal("a pty was not seen as a terminal")
	}
	p.update(client.Progress{Done: 0, Total: 2048})
	p.update(client.Progress{Done: 2048, Total: 2048})
	p.finish(true)
	s.Close()
	out, _ := io.ReadAll(io.LimitReader(m, 4096))
	got := string(out)
	if strings.Count(got, "\r") < 2 || !strings.Contains(got, "["+strings.Repeat("=", barWidth)+"] 2.0 KiB / 2.0 KiB") {
		t.Fatalf("terminal output %q", got)
	}
}
