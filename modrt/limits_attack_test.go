package modrt_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/internal/testenv"
	rtapi "github.com/edgev2/edgev2/modrt/api"
	"github.com/edgev2/edgev2/modrt/logstore"
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

// HostConfig.Memory is the module's cgroup memory limit: a module that
// allocates past it is killed by the kernel inside its cgroup, and one that
// stays below it is not.
func TestHostConfigMemoryBoundsWhatAModuleCanAllocate(t *testing.T) {
	m := startModrtdIn(t, "edgev2-limits-mem")
	m.ImportImage(t, testenv.BuildImage(t, "edgev2.test/busybox:1", testenv.ImageConfig{Entrypoint: []string{"/bin/sh", "-c"}}))
	// 64 MiB held in a shell variable, in a subshell the OOM killer may take.
	const hog = "( x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo GOT ${#x} ); echo RC $?; exec sleep 600"
	for _, tc := range []struct{ name, hc, want string }{
		{"capped", `{"Memory":33554432}`, "RC 137"}, // 32 MiB: SIGKILLed
		{"roomy", `{"Memory":268435456}`, "RC 0"},   // 256 MiB
	} {
		if err := m.CreateModule(tc.name, specCO(tc.name, "edgev2.test/busybox:1", "never", tc.hc, hog)); err != nil {
			t.Fatal(err)
		}
		if got := m.waitLog(t, tc.name, "RC "); got != tc.want {
			t.Errorf("%s (%s) allocating 64 MiB: %q; want %q (%q)", tc.name, tc.hc, got, tc.want, m.ModuleLogs(t, tc.name))
		}
		m.Module(tc.name).Call(rtapi.ModuleInterface+".Remove", 0)
	}
}

// Debian's containerd.service runs containerd with OOMScoreAdjust=-999, and
// each shim takes its parent's score + 1: a module that does not set its own
// score would run at -998, so when a module without a memory limit eats the
// host's memory, the kernel kills keyd, modrtd or sshd (score 0) first.
// Modules run at 0, as Docker's containers do.
func TestModulesDoNotInheritContainerdsOOMShield(t *testing.T) {
	m := startModrtdIn(t, "edgev2-limits-oom")
	// -999 needs CAP_SYS_RESOURCE, which a test sandbox may lack; +500
	// shows the same inheritance (the shim: 501).
	adj := fmt.Sprintf("/proc/%d/oom_score_adj", m.ctr.Pid())
	if err := os.WriteFile(adj, []byte("-999"), 0); err != nil {
		t.Logf("containerd at -999: %v; at +500 instead", err)
		if err := os.WriteFile(adj, []byte("500"), 0); err != nil {
			t.Fatal(err)
		}
	}
	m.ImportImage(t, testenv.BuildImage(t, "edgev2.test/busybox:1", testenv.ImageConfig{Entrypoint: []string{"/bin/sh", "-c"}}))
	if err := m.CreateModule("hungry", specCO("hungry", "edgev2.test/busybox:1", "never", `{}`, "echo OOM $(cat /proc/self/oom_score_adj) $(cat /proc/1/oom_score_adj); exec sleep 600")); err != nil {
		t.Fatal(err)
	}
	if got := m.waitLog(t, "hungry", "OOM "); got != "OOM 0 0" {
		t.Fatalf("a module's oom_score_adj (a child's, its init's): %q; want \"OOM 0 0\", not containerd's shield", got)
	}
	m.Module("hungry").Call(rtapi.ModuleInterface+".Remove", 0)
}

// A module writing output as fast as it can fills at most its log's
// rotation, 3 files of 10 MiB by default; a deployment may ask for bigger
// logs (Docker's LogConfig max-size and max-file) only up to the policy's
// max_log_size per module (default 1 GiB), not for a disk's worth.
func TestModuleOutputCannotFillTheDisk(t *testing.T) {
	m := startModrtdIn(t, "edgev2-limits-logs")
	const image = "edgev2.test/busybox:1"
	m.ImportImage(t, testenv.BuildImage(t, image, testenv.ImageConfig{Entrypoint: []string{"/bin/sh", "-c"}}))
	const flood = "yes $(head -c 1000 /dev/zero | tr '\\0' x) | head -c 67108864; echo; echo DONE; exec sleep 600"
	if err := m.CreateModule("chatty", specCO("chatty", image, "never", `{}`, flood)); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(m.home, "runtime", "logs", "chatty")
	if !testenv.WaitFor(60*time.Second, func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "log"))
		return bytes.Contains(b, []byte("DONE"))
	}) {
		t.Fatal("the module never finished writing 64 MiB")
	}
	if n, files, err := logstore.DiskUsage(dir); err != nil || n > 30<<20+64<<10 || files > 3 {
		t.Fatalf("64 MiB of output take %d bytes in %d files (%v); want at most 3 files of 10 MiB", n, files, err)
	}
	m.Module("chatty").Call(rtapi.ModuleInterface+".Remove", 0)

	logs := func(size, files string) string {
		return fmt.Sprintf(`{"LogConfig":{"Type":"json-file","Config":{"max-size":%q,"max-file":%q}}}`, size, files)
	}
	// Microsoft's recommended edgeHub/edgeAgent setting, and then some.
	for _, hc := range []string{logs("10m", "10"), logs("100m", "10")} {
		if err := m.CreateModule("logger", specCO("logger", image, "never", hc, "true")); err != nil {
			t.Fatalf("%s: %v", hc, err)
		}
		m.Module("logger").Call(rtapi.ModuleInterface+".Remove", 0)
	}
	for _, hc := range []string{logs("1t", "1000"), logs("2g", "1")} {
		err := m.CreateModule("hoarder", specCO("hoarder", image, "never", hc, "true"))
		m.Module("hoarder").Call(rtapi.ModuleInterface+".Remove", 0)
		var de godbus.Error
		if !errorsAs(err, &de) || de.Name != bus.ErrInvalidArgs || !strings.Contains(fmt.Sprint(de.Body...), "max_log_size") {
			t.Errorf("%s: %v; want %s naming max_log_size", hc, err, bus.ErrInvalidArgs)
		}
	}
}
