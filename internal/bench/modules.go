package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/internal/testenv"
	rtapi "github.com/edgev2/edgev2/modrt/api"
)

const benchImage = "edgev2.bench/busybox:1"

// moduleRows measures modrtd: a module's whole life (create, start, run
// `true`, exit, remove) beside `ctr run --rm --seccomp` of the same image and
// command, at 1 and 8 at once (the ratio is modrtd / ctr); workload sign
// from inside a module (a process exec'd into its container, 1 and 8
// clients; modrtd signs over the Keys session identityd's OpenModuleSigner
// hands it, checked from its log) beside keyd SignDerived over the bus; modrtd's memory with 0
// and 20 modules. identityd (provisioned), keyd and certd are running.
func moduleRows(e *benchEnv) error {
	p, b := e.p, e.b
	if e.identityd == nil {
		return fmt.Errorf("the modules part needs the identity part (a provisioned identityd)")
	}
	ctr := testenv.StartContainerd(p)
	dir := testenv.SharedTempDir(p, "bench-modrtd")
	cfg := filepath.Join(dir, "modrtd.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("homedir = %q\ncontainerd_address = %q\nnamespace = \"edgev2-bench\"\ntrust_bundle = \"bench-cloud-ca-1\"\n", filepath.Join(dir, "home"), ctr.Address)), 0o600)
	svc := keep(testenv.StartService(p, b, testenv.ServiceOptions{Binary: testenv.BuildBinary(p, "./cmd/edgev2-modrtd"),
		// At info, modrtd says when it signs module tokens through identityd
		// (no module signer): the workload row checks it did not.
		Args: []string{"--config", cfg, "--log-level", "info"}, User: "root", BusName: rtapi.BusName}))
	time.Sleep(300 * time.Millisecond)
	e.mem(rssOf(svc, "modrtd (0 modules)", "idle", 30))
	bin := testenv.BuildWorkloadClient(p)
	archive := testenv.BuildImage(p, benchImage, testenv.ImageConfig{Entrypoint: []string{"/bin/sh", "-c"},
		Cmd: []string{"while true; do sleep 1; done"}, Files: map[string]string{"/bin/workloadclient": bin}})
	conn := b.Conn(p)
	root := conn.Object(rtapi.BusName, rtapi.ObjectPath)
	f, _ := os.Open(archive)
	if err := root.Call(rtapi.Interface+".ImportImage", 0, godbus.UnixFD(f.Fd())).Err; err != nil {
		return err
	}
	f.Close()
	ctr.Ctr(p, "-n", "ctr-bench", "images", "import", archive)
	object := func(name string) godbus.BusObject {
		return conn.Object(rtapi.BusName, bus.ChildPath(rtapi.ObjectPath, "modules", name))
	}
	status := func(name string) string {
		v, _ := object(name).GetProperty(rtapi.ModuleInterface + ".Status")
		s, _ := v.Value().(string)
		return s
	}
	create := func(name, cmd string) error {
		spec := fmt.Sprintf(`{"name":%q,"type":"docker","restartPolicy":"never","config":{"settings":{"image":%q,"createOptions":{"Cmd":[%q]}}}}`, name, benchImage, cmd)
		return root.Call(rtapi.Interface+".CreateModule", 0, name, spec, map[string]godbus.Variant{}).Err
	}
	var seq atomic.Int64
	// life runs c modules (or c ctr containers) through their whole life at once.
	life := func(c int, one func(id string) error) (float64, error) {
		var wg sync.WaitGroup
		errs := make(chan error, c)
		t0 := time.Now()
		for i := 0; i < c; i++ {
			id := fmt.Sprintf("life-%d", seq.Add(1))
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := one(id); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return 0, err
		}
		return ms(time.Since(t0)), nil
	}
	viaModrtd := func(id string) error {
		if err := create(id, "true"); err != nil {
			return err
		}
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(2 * time.Millisecond) {
			if st := status(id); st == "stopped" || st == "failed" {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("module %s did not finish in 60 s", id)
			}
		}
		return object(id).Call(rtapi.ModuleInterface+".Remove", 0).Err
	}
	viaCtr := func(id string) error {
		// --seccomp: Docker's default profile, as modrtd gives every
		// module that is not privileged — the same work on both sides.
		out, err := exec.Command("ctr", "-a", ctr.Address, "-n", "ctr-bench", "run", "--rm", "--seccomp", benchImage, id, "/bin/sh", "-c", "true").CombinedOutput()
		if err != nil {
			return fmt.Errorf("ctr run --rm: %v: %s", err, out)
		}
		return nil
	}
	var all []*series
	var rows []row
	counts := []int{1, 8}
	if *quick {
		counts = []int{1}
	}
	for _, c := range counts {
		ours := millis("module life via modrtd (create, start, exit, remove)", c, func(c int, _ time.Duration) (float64, error) { return life(c, viaModrtd) })
		theirs := millis("`ctr run --rm --seccomp`, same image and command", c, func(c int, _ time.Duration) (float64, error) { return life(c, viaCtr) })
		all = append(all, ours, theirs)
		rows = append(rows, against("Modules: start (ratio modrtd / ctr)", ours, theirs, nil))
	}
	if err := interleave(*reps, all...); err != nil {
		return err
	}
	e.add(rows...)

	// Workload sign from inside a module: a process exec'd into its
	// container (its pid namespace) signs through the module's socket.
	if err := create("signer", "while true; do sleep 1; done"); err != nil {
		return err
	}
	for deadline := time.Now().Add(30 * time.Second); status("signer") != "running"; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("module signer is %s, not running", status("signer"))
		}
	}
	workload := func(c int, d time.Duration) (float64, error) {
		script := fmt.Sprintf("BENCH_SECONDS=%g BENCH_CLIENTS=%d exec /bin/workloadclient", d.Seconds(), c)
		out, err := exec.Command("ctr", "-a", ctr.Address, "-n", "edgev2-bench", "task", "exec", "--exec-id", fmt.Sprintf("bench-%d", seq.Add(1)),
			"signer", "/bin/sh", "-c", script).CombinedOutput()
		if err != nil {
			return 0, fmt.Errorf("exec workloadclient: %v: %s", err, out)
		}
		return workloadResult(string(out))
	}
	all, rows = nil, nil
	for _, c := range []int{1, 8} {
		fig := rate("workload sign from inside a module", c, workload)
		sd := e.signDerived(c)
		all = append(all, fig, sd)
		rows = append(rows, against("Modules: workload sign (HTTP → modrtd → keyd over identityd's module signer session)", fig, sd, atLeast(0.8, "≥ 0.80")))
	}
	if err := interleave(*reps, all...); err != nil {
		return err
	}
	// The title names one hop: modrtd must not have fallen back to
	// Identity1.SignAsModule (two hops) for any of it.
	if out := svc.Output(); strings.Contains(out, "signing through identityd") {
		return fmt.Errorf("modrtd signed module tokens through identityd, not over the module signer; its log:\n%s", out)
	}
	e.add(rows...)
	for i := 0; i < 20; i++ {
		if err := create(fmt.Sprintf("idle-%d", i), "while true; do sleep 1; done"); err != nil {
			return err
		}
	}
	time.Sleep(time.Second)
	e.mem(rssOf(svc, "modrtd (21 modules running)", "after load", 0))
	return nil
}

func workloadResult(out string) (float64, error) {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if j, ok := strings.CutPrefix(sc.Text(), "WORKLOAD-RESULT "); ok {
			var res map[string]any
			if err := json.Unmarshal([]byte(j), &res); err != nil {
				return 0, err
			}
			if v, ok := res["sign_per_s"].(float64); ok && v > 0 {
				return v, nil
			}
			return 0, fmt.Errorf("workload client: %s", j)
		}
	}
	return 0, fmt.Errorf("workload client printed no result: %s", out)
}
