package testenv

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	rtapi "github.com/edgev2/edgev2/modrt/api"
	"github.com/edgev2/edgev2/modrt/logstore"
)

// The Device's modrtd, over root's connection: what the tests of modules
// do with it, written once.

// ImportImage sends an image archive to modrtd as a file descriptor and
// returns the names it imported.
func (d *Device) ImportImage(t TB, archive string) []string {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatalf("%v", err)
	}
	defer f.Close()
	var names []string
	if err := d.Runtime().Call(rtapi.Interface+".ImportImage", 0, godbus.UnixFD(f.Fd())).Store(&names); err != nil {
		t.Fatalf("ImportImage: %v", err)
	}
	return names
}

// CreateModule creates (and starts) a module from its spec JSON.
func (d *Device) CreateModule(name, spec string) error {
	var p godbus.ObjectPath
	return d.Runtime().Call(rtapi.Interface+".CreateModule", 0, name, spec, map[string]godbus.Variant{}).Store(&p)
}

// Runtime is modrtd's root object.
func (d *Device) Runtime() godbus.BusObject { return d.Conn().Object(rtapi.BusName, rtapi.ObjectPath) }

// Module is a module's object.
func (d *Device) Module(name string) godbus.BusObject {
	return d.Conn().Object(rtapi.BusName, bus.ChildPath(rtapi.ObjectPath, "modules", name))
}

// ModuleLogs reads the module's whole log through GetLogs's fd and
// unframes Docker's 8-byte multiplexing (a stream not in that framing
// fails the test).
func (d *Device) ModuleLogs(t TB, name string) string {
	t.Helper()
	var fd godbus.UnixFD
	if err := d.Module(name).Call(rtapi.ModuleInterface+".GetLogs", 0, map[string]godbus.Variant{"tail": godbus.MakeVariant(int32(-1))}).Store(&fd); err != nil {
		t.Fatalf("GetLogs %s: %v", name, err)
	}
	f := os.NewFile(uintptr(fd), "logs")
	defer f.Close()
	text, err := logstore.FramedText(f)
	if err != nil {
		t.Fatalf("the log stream of %s is not in Docker's framing: %v", name, err)
	}
	return text
}

// ModuleLines are the JSON objects the module printed on lines that
// start with prefix and a space (workloadclient's "WORKLOAD-RESULT {...}").
func (d *Device) ModuleLines(t TB, name, prefix string) []map[string]any {
	t.Helper()
	return JSONLines(t, d.ModuleLogs(t, name), prefix)
}

// JSONLines are the JSON objects on the lines of text that start with
// prefix and a space.
func JSONLines(t TB, text, prefix string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		if j, ok := strings.CutPrefix(sc.Text(), prefix+" "); ok {
			var m map[string]any
			if err := json.Unmarshal([]byte(j), &m); err != nil {
				t.Fatalf("%s line %q: %v", prefix, j, err)
			}
			out = append(out, m)
		}
	}
	return out
}

// WaitModuleLine waits (60 s at most) for a line of the module's that
// starts with prefix and satisfies match (nil: any), and returns it.
func (d *Device) WaitModuleLine(t TB, name, prefix string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	var found map[string]any
	Eventually(t, 60*time.Second, func() bool {
		for _, l := range d.ModuleLines(t, name, prefix) {
			if match == nil || match(l) {
				found = l
				return true
			}
		}
		return false
	}, "module %s printed no matching %s line", name, prefix)
	return found
}

// BuildWorkloadClient builds internal/testenv/workloadclient, the program
// tests, the demo and the bench run inside modules, static (no cgo, Go's
// own linker whatever GOFLAGS the caller runs with: `make bench` links the
// daemons as the package does) and returns its path.
func BuildWorkloadClient(t TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "workloadclient")
	build := exec.Command("go", "build", "-o", bin, "./internal/testenv/workloadclient")
	build.Dir = RepoRoot()
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build workloadclient: %v\n%s", err, out)
	}
	return bin
}

// WorkloadClientImage builds internal/testenv/workloadclient (static) into
// the image edgev2.test/workloadclient:1, entrypoint /bin/workloadclient,
// and returns the archive.
func WorkloadClientImage(t TB) string {
	t.Helper()
	bin := BuildWorkloadClient(t)
	return BuildImage(t, "edgev2.test/workloadclient:1", ImageConfig{
		Entrypoint: []string{"/bin/workloadclient"}, Files: map[string]string{"/bin/workloadclient": bin}})
}
