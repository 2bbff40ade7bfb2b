package ctrd

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/containerd/oci"

	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/modrt/logstore"
	"github.com/edgev2/edgev2/modrt/modspec"
)

// A container whose log rotation (its labels) is bigger than the policy's
// max_log_size now allows, made by an older modrtd or before the limit was
// lowered, keeps its log within the limit after modrtd reopens, as a
// container above a lowered max_pids_limit gets the maximum: the limit
// bounds every module's log, not only those deployed since. What such a
// log already holds beyond the limit goes too.
func TestContainerMadeWithABiggerLogThanThePolicyAllowsIsCappedAfterReopen(t *testing.T) {
	e := startRuntime(t)
	const flood = "yes $(head -c 1000 /dev/zero | tr '\\0' x) | head -c 8388608; echo; echo DONE; exec sleep 600"
	for _, name := range []string{"hoarder", "latecomer"} {
		req := CreateRequest{Name: name, Image: testImage, Restart: modspec.RestartNever,
			LogMaxBytes: 1 << 20, LogFiles: 1000, Opts: []oci.SpecOpts{oci.WithProcessArgs("sh", "-c", flood)}}
		if err := e.rt.Create(t.Context(), req); err != nil {
			t.Fatal(err)
		}
	}
	done := func(name string) {
		t.Helper()
		if !testenv.WaitFor(60*time.Second, func() bool {
			b, _ := os.ReadFile(filepath.Join(e.cfg.StateDir, "logs", name, "log"))
			return bytes.Contains(b, []byte("DONE"))
		}) {
			t.Fatalf("%s never finished writing 8 MiB", name)
		}
	}
	if err := e.rt.Start(t.Context(), "hoarder"); err != nil {
		t.Fatal(err)
	}
	done("hoarder")
	if err := e.rt.Close(); err != nil {
		t.Fatal(err)
	}
	e.cfg.MaxLogBytes = 1 << 20 // the policy now: 1 MiB per module
	e.open(t)
	if err := e.rt.Start(t.Context(), "latecomer"); err != nil {
		t.Fatal(err)
	}
	done("latecomer")
	for _, name := range []string{"hoarder", "latecomer"} {
		if n, files, err := logstore.DiskUsage(filepath.Join(e.cfg.StateDir, "logs", name)); err != nil || n > 1<<20+64<<10 {
			t.Errorf("%s: 8 MiB of output take %d bytes in %d files (%v); want at most the policy's 1 MiB", name, n, files, err)
		}
	}
}
