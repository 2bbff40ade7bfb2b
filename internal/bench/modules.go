package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/modrt"
)

// moduleNotes measures modrtd: create+start to running beside `ctr run` of
// the same image, workload sign requests/s from inside a module, and
// modrtd's RSS with 0 and 20 modules. identityd (provisioned) is running.
func moduleNotes(p *testenv.Program, b *testenv.Bus) ([]string, error) {
	ctr := testenv.StartContainerd(p)
	dir := testenv.SharedTempDir(p, "bench-modrtd")
	cfg := filepath.Join(dir, "modrtd.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("homedir = %q\ncontainerd_address = %q\nnamespace = \"edgev2-bench\"\ntrust_bundle = \"bench-cloud-ca\"\n", filepath.Join(dir, "home"), ctr.Address)), 0o600)
	svc := keep(testenv.StartService(p, b, testenv.ServiceOptions{Binary: testenv.BuildBinary(p, "./cmd/edgev2-modrtd"),
		Args: []string{"--config", cfg, "--log-level", "warn"}, User: "root", BusName: modrt.BusName}))
	time.Sleep(300 * time.Millisecond)
	rss0 := svc.RSSKiB()
	bin := filepath.Join(p.TempDir(), "workloadclient")
	build := exec.Command("go", "build", "-o", bin, "./internal/testenv/workloadclient")
	build.Dir = testenv.RepoRoot()
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build workloadclient: %v: %s", err, out)
	}
	archive := testenv.BuildImage(p, "edgev2.bench/busybox:1", testenv.ImageConfig{Entrypoint: []string{"/bin/sh", "-c"},
		Cmd: []string{"while true; do sleep 1; done"}, Files: map[string]string{"/bin/workloadclient": bin}})
	conn := b.Conn(p)
	root := conn.Object(modrt.BusName, modrt.ObjectPath)
	f, _ := os.Open(archive)
	if err := root.Call(modrt.Interface+".ImportImage", 0, godbus.UnixFD(f.Fd())).Err; err != nil {
		return nil, err
	}
	f.Close()
	ctr.Ctr(p, "-n", "ctr-bench", "images", "import", archive)
	status := func(name string) string {
		v, _ := conn.Object(modrt.BusName, bus.ChildPath(modrt.ObjectPath, "modules", name)).GetProperty(modrt.ModuleInterface + ".Status")
		s, _ := v.Value().(string)
		return s
	}
	create := func(name, cmd string, env string) error {
		spec := fmt.Sprintf(`{"name":%q,"type":"docker","restartPolicy":"never","config":{"settings":{"image":"edgev2.bench/busybox:1","createOptions":{"Cmd":[%q]}},"env":{%s}}}`, name, cmd, env)
		return root.Call(modrt.Interface+".CreateModule", 0, name, spec, map[string]godbus.Variant{}).Err
	}
	const n = 5
	var ours, theirs time.Duration
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("speed-%d", i)
		start := time.Now()
		if err := create(name, "while true; do sleep 1; done", ""); err != nil {
			return nil, err
		}
		for status(name) != "running" {
			time.Sleep(2 * time.Millisecond)
		}
		ours += time.Since(start)
		start = time.Now()
		ctr.Ctr(p, "-n", "ctr-bench", "run", "-d", "edgev2.bench/busybox:1", name, "/bin/sh", "-c", "while true; do sleep 1; done")
		theirs += time.Since(start)
	}
	notes := []string{fmt.Sprintf("module create+start → running via modrtd: %v avg (identity created in the hub, workload socket, supervision) beside `ctr run -d` of the same image: %v avg; ratio %.2f",
		(ours / n).Round(time.Millisecond), (theirs / n).Round(time.Millisecond), float64(theirs)/float64(ours))}
	// Workload sign from inside a module.
	if err := create("signer", "/bin/workloadclient", `"BENCH_SECONDS":{"value":"3"}`); err != nil {
		return nil, err
	}
	var rate float64
	for deadline := time.Now().Add(30 * time.Second); rate == 0 && time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		rate = benchResult(conn, "signer")
	}
	notes = append(notes, fmt.Sprintf("workload sign from inside a module (1 client, HTTP over the socket → identityd → keyd SignDerived): %.0f requests/s", rate))
	for i := n; i < 20; i++ {
		if err := create(fmt.Sprintf("speed-%d", i), "while true; do sleep 1; done", ""); err != nil {
			return nil, err
		}
	}
	time.Sleep(time.Second)
	notes = append(notes, fmt.Sprintf("modrtd RSS: %.1f MB with 0 modules, %.1f MB with 20 running", float64(rss0)/1024, float64(svc.RSSKiB())/1024))
	return notes, nil
}

func benchResult(conn *godbus.Conn, name string) float64 {
	var fd godbus.UnixFD
	obj := conn.Object(modrt.BusName, bus.ChildPath(modrt.ObjectPath, "modules", name))
	if obj.Call(modrt.ModuleInterface+".GetLogs", 0, map[string]godbus.Variant{}).Store(&fd) != nil {
		return 0
	}
	f := os.NewFile(uintptr(fd), "logs")
	text, _ := modrt.FramedText(f)
	f.Close()
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		if j, ok := strings.CutPrefix(sc.Text(), "WORKLOAD-RESULT "); ok {
			var res map[string]any
			json.Unmarshal([]byte(j), &res)
			v, _ := res["sign_per_s"].(float64)
			return v
		}
	}
	return 0
}

var _ = context.Background
