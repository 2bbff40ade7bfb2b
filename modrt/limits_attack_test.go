package modrt_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/internal/testenv"
	rtapi "github.com/edgev2/edgev2/modrt/api"
)

// forker starts n sleepers from a subshell (which dies at the first fork the
// kernel refuses), then counts the processes of the module's pid namespace
// without forking (a glob) and prints "PROCS <count>".
func forker(n int) string {
	return fmt.Sprintf("( i=0; while [ $i -lt %d ]; do sleep 600 & i=$((i+1)); done ) 2>/dev/null; set -- /proc/[0-9]*; echo PROCS $#; exec sleep 600", n)
}

func (m *modrtd) procs(t *testing.T, name string) int {
	t.Helper()
	n, err := strconv.Atoi(strings.TrimPrefix(m.waitLog(t, name, "PROCS "), "PROCS "))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// A module that forks without end (a fork bomb, a leak of threads) stops at
// the runtime's default pids limit, 1024 processes and threads, instead of
// taking the host's pid space from every other service; a deployment may ask
// for less (Docker's HostConfig.PidsLimit) but not for more than the policy's
// maximum; a module that runs a few processes is not bothered.
func TestModuleCannotForkBeyondThePidsLimit(t *testing.T) {
	m := startModrtdIn(t, "edgev2-limits")
	m.ImportImage(t, testenv.BuildImage(t, "edgev2.test/busybox:1", testenv.ImageConfig{Entrypoint: []string{"/bin/sh", "-c"}}))
	const image = "edgev2.test/busybox:1"

	if err := m.CreateModule("bomb", specCO("bomb", image, "never", `{}`, forker(1100))); err != nil {
		t.Fatal(err)
	}
	if n := m.procs(t, "bomb"); n > 1024 {
		t.Fatalf("a module without PidsLimit ran %d processes; want at most the default limit, 1024", n)
	}
	if err := m.CreateModule("few", specCO("few", image, "never", `{}`, forker(20))); err != nil {
		t.Fatal(err)
	}
	if n := m.procs(t, "few"); n != 21 {
		t.Fatalf("a module that starts 20 processes has %d; want 21 (its shell too)", n)
	}
	if err := m.CreateModule("small", specCO("small", image, "never", `{"PidsLimit":32}`, forker(100))); err != nil {
		t.Fatalf("a deployment asking for a lower pids limit: %v", err)
	}
	if n := m.procs(t, "small"); n > 32 || n < 16 {
		t.Fatalf("a module with PidsLimit 32 ran %d processes; want up to 32", n)
	}
	for _, tc := range []struct{ name, hc string }{{"more", `{"PidsLimit":5000}`}, {"unlimited", `{"PidsLimit":-1}`}} {
		err := m.CreateModule(tc.name, specCO(tc.name, image, "never", tc.hc, "true"))
		var de godbus.Error
		if !errorsAs(err, &de) || de.Name != bus.ErrInvalidArgs || !strings.Contains(fmt.Sprint(de.Body...), "max_pids_limit") {
			t.Errorf("%s: %v; want %s naming max_pids_limit", tc.hc, err, bus.ErrInvalidArgs)
		}
	}
	for _, n := range []string{"bomb", "few", "small"} {
		m.Module(n).Call(rtapi.ModuleInterface+".Remove", 0)
	}
}
