package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/keys"
	keysapi "github.com/edgev2/edgev2/keys/api"
)

// keyScaleNotes measures keyd on the file engine with 10 and 10,000
// ec-p256 keys: start, ListKeys, GetManagedObjects, RSS after listing, Sign,
// and one caller (an ordinary user, through polkit) cycling Sign over 1,000
// keys. Figures are printed with their repetitions and spread; nothing is
// asserted.
func keyScaleRows(e *benchEnv) error {
	// keyd here runs on its own file store under the same bus name: the
	// keyd the earlier parts kept must have released it first.
	stopKept(e.p)
	notes, err := keyScaleNotes(e.p, e.b, testenv.BuildBinary(e.p, "./cmd/edgev2-keyd"), e.self, e.dir)
	e.note(notes...)
	return err
}

func keyScaleNotes(p *testenv.Program, b *testenv.Bus, keyd, self, dir string) ([]string, error) {
	uid, gid := testenv.EnsureUser(p, testenv.ServiceUser)
	ouid, ogid := testenv.EnsureUser(p, testenv.OtherUser)
	notes := []string{"keyd at scale (file engine, ec-p256 keys; median and min–max over the repetitions):"}
	sizes := []int{10, 10000}
	if *quick {
		sizes = []int{10, 1000}
	}
	for _, n := range sizes {
		home := filepath.Join(dir, fmt.Sprintf("scale-%d", n))
		t0 := time.Now()
		if err := makeKeys(home, n); err != nil {
			return nil, err
		}
		exec.Command("chown", "-R", fmt.Sprintf("%d:%d", uid, gid), home).Run()
		prep := time.Since(t0)
		cfgPath := filepath.Join(dir, fmt.Sprintf("scale-%d.toml", n))
		os.WriteFile(cfgPath, []byte(fmt.Sprintf("homedir = %q\n", home)), 0o600)
		os.Chown(cfgPath, uid, gid)
		args := []string{"--config", cfgPath, "--log-level", "warn"}
		if d := os.Getenv("EDGEV2_BENCH_PROFILE"); d != "" {
			args = append(args, "--cpuprofile", filepath.Join(d, fmt.Sprintf("keyd-scale-%d.pprof", n)))
		}
		opts := testenv.ServiceOptions{Binary: keyd, Args: args,
			User: testenv.ServiceUser, BusName: keysapi.BusName}
		var starts []float64
		var svc *testenv.Service
		for i := 0; i < 3; i++ {
			if svc != nil {
				svc.Stop(p)
			}
			s0 := time.Now()
			svc = testenv.StartService(p, b, opts)
			starts = append(starts, ms(time.Since(s0)))
		}
		rssIdle := svc.RSSKiB()
		conn := b.Conn(p)
		root := conn.Object(keysapi.BusName, keysapi.ObjectPath)
		var lists, gmos []float64
		keydCPU0, busCPU0 := cpuTime(svc.Pid()), cpuTime(b.Pid())
		for i := 0; i < 5; i++ {
			var ids []string
			l0 := time.Now()
			if err := root.Call(keysapi.Interface+".ListKeys", 0).Store(&ids); err != nil {
				return nil, err
			}
			lists = append(lists, ms(time.Since(l0)))
			if len(ids) != n {
				return nil, fmt.Errorf("ListKeys at %d keys returned %d", n, len(ids))
			}
			var objs map[godbus.ObjectPath]map[string]map[string]godbus.Variant
			g0 := time.Now()
			if err := root.Call("org.freedesktop.DBus.ObjectManager.GetManagedObjects", 0).Store(&objs); err != nil {
				return nil, err
			}
			gmos = append(gmos, ms(time.Since(g0)))
			if len(objs) != n {
				return nil, fmt.Errorf("GetManagedObjects at %d keys returned %d", n, len(objs))
			}
		}
		// CPU of keyd and of the bus per ListKeys+GetManagedObjects pair: the
		// rest of the wall time is this client decoding the reply.
		keydCPU, busCPU := ms(cpuTime(svc.Pid())-keydCPU0)/5, ms(cpuTime(b.Pid())-busCPU0)/5
		rssListed := svc.RSSKiB()
		time.Sleep(3 * time.Second) // keyd returns a large listing's garbage to the OS after 2 s
		rssSettled := svc.RSSKiB()
		load := func(op string, keys int) (float64, error) {
			cmd := exec.Command(self, "-client", "-address", b.Address, "-op", op, "-key", "bench-scale-", "-n", fmt.Sprint(keys),
				"-mech", "ecdsa-sha256", "-c", "1", "-d", sample.String())
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(ouid), Gid: uint32(ogid), Groups: []uint32{}}}
			out, err := cmd.Output()
			var r result
			if jerr := json.Unmarshal(out, &r); jerr != nil {
				return 0, fmt.Errorf("load client %s: %v %v: %s", op, err, jerr, out)
			}
			if r.Errors > 0 || r.Err != "" {
				return 0, fmt.Errorf("load client %s: %d errors, first: %s", op, r.Errors, r.Err)
			}
			return float64(r.Ops) / r.Secs, nil
		}
		var signs []float64
		for i := 0; i < 3; i++ {
			s, err := load("cycle", 1)
			if err != nil {
				return nil, err
			}
			signs = append(signs, s)
		}
		notes = append(notes,
			fmt.Sprintf("  %5d keys: made in %s; start %s ms; ListKeys %s ms; GetManagedObjects %s ms (keyd CPU %.0f ms, bus CPU %.0f ms per listing pair); RSS %.1f MB idle, %.1f MB right after listing, %.1f MB 3 s later",
				n, prep.Round(time.Millisecond), spread(starts, "%.0f"), spread(lists, "%.1f"), spread(gmos, "%.0f"), keydCPU, busCPU, float64(rssIdle)/1024, float64(rssListed)/1024, float64(rssSettled)/1024),
			fmt.Sprintf("  %5d keys: Sign ecdsa-sha256 on one key, 1 client (uid %s): %s ops/s", n, testenv.OtherUser, spread(signs, "%.0f")))
		if n >= 1000 {
			var cycles []float64
			for i := 0; i < 3; i++ {
				s, err := load("cycle", 1000)
				if err != nil {
					return nil, err
				}
				cycles = append(cycles, s)
			}
			notes = append(notes, fmt.Sprintf("  %5d keys: Sign cycling over 1,000 keys, 1 client (uid %s, after one untimed pass: polkit decisions cached): %s ops/s; RSS after %.1f MB",
				n, testenv.OtherUser, spread(cycles, "%.0f"), float64(svc.RSSKiB())/1024))
		}
		svc.Stop(p)
	}
	return notes, nil
}

// makeKeys writes n ec-p256 keys bench-scale-0.. with the file engine, in
// parallel (each write is fsynced).
func makeKeys(home string, n int) error {
	e, err := keys.OpenFileEngine(home)
	if err != nil {
		return err
	}
	ids := make(chan int)
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ids {
				if _, err := e.Generate(context.Background(), fmt.Sprintf("bench-scale-%d", i), keys.Spec{Type: keys.ECP256}); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		ids <- i
	}
	close(ids)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// cpuTime is a process's user+system CPU time from /proc/<pid>/stat.
func cpuTime(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		return 0
	}
	var ut, st int64
	fmt.Sscan(fields[11], &ut)
	fmt.Sscan(fields[12], &st)
	return time.Duration(ut+st) * (time.Second / 100) // USER_HZ
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// spread is "median (min–max, n=N)".
func spread(v []float64, format string) string {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	f := func(x float64) string { return fmt.Sprintf(format, x) }
	return fmt.Sprintf("%s (%s–%s, n=%d)", f(s[len(s)/2]), f(s[0]), f(s[len(s)-1]), len(s))
}
