// Command bench measures edgev2's services beside the limits they stand
// on, all in one run on one private bus: each figure and its limits are
// measured the same way, interleaved (A, B, A, B, ...), several times;
// medians, spreads and ratios are printed, and each goal the issues set
// beside its ratio. Run it with `make bench` (as root).
//
// Exit status: 0 when every row was measured, whether its goal is met or
// not (a goal not met is printed as NOT MET); 1 when a row could not be
// measured (a service failed, a call errored).
package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/keys"
	"github.com/edgev2/edgev2/keys/client"
)

var (
	clientMode = flag.Bool("client", false, "internal: run as a load client")
	echoMode   = flag.Bool("echo", false, "internal: serve the echo service")
	address    = flag.String("address", "", "bus address (client mode)")
	op         = flag.String("op", "echo", "echo, sign, cycle or pkcs11 (client mode)")
	keyID      = flag.String("key", "", "key id (client mode)")
	mech       = flag.String("mech", "", "mechanism (client mode)")
	conc       = flag.Int("c", 1, "concurrent clients (client mode)")
	duration   = flag.Duration("d", time.Second, "measurement time (client mode)")
	cycleKeys  = flag.Int("n", 1, "keys the cycle op signs with in turn: <key>0 .. <key>n-1 (client mode)")
	module     = flag.String("module", "", "PKCS#11 module the pkcs11 op loads (client mode)")
	tokenLabel = flag.String("token", "", "label of the token the pkcs11 op signs on, with the EC key labelled -key (client mode)")

	sample   = flag.Duration("sample", time.Second, "measurement time of one sample")
	reps     = flag.Int("reps", 5, "repetitions of each figure and limit (interleaved)")
	quick    = flag.Bool("quick", false, "quick mode: 250 ms samples, keyscale at 1,000 keys, no 8-module start")
	jsonOut  = flag.String("json", "", "also write the results as JSON to this file")
	only     = flag.String("only", "", "run only these parts (comma-separated): keys, session, pkcs11mod, certs, identity, modules, keyscale")
	echoSize = 64
)

func main() {
	flag.Parse()
	switch {
	case *clientMode && *op == "pkcs11":
		runPKCS11Client()
		return
	case *clientMode:
		runClient()
		return
	case *echoMode:
		runEcho()
		return
	case os.Getenv(signServerEnv) != "":
		runSignServer(os.Getenv(signServerEnv))
		return
	}
	if *quick {
		*sample = 250 * time.Millisecond
	}
	p := &testenv.Program{Name: "bench"}
	p.Run(func() error { return bench(p) })
}

func want(part string) bool {
	if *only == "" {
		return true
	}
	for _, s := range strings.Split(*only, ",") {
		if strings.TrimSpace(s) == part {
			return true
		}
	}
	return false
}

type result struct {
	Ops    int64   `json:"ops"`
	Secs   float64 `json:"secs"`
	Errors int64   `json:"errors"`
	Err    string  `json:"err,omitempty"`
}

// runClient opens c connections and calls op on each in a loop for d.
func runClient() {
	var ops, errs atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	conns := make([]*godbus.Conn, *conc)
	for i := range conns {
		c, err := godbus.Connect(*address)
		if err != nil {
			json.NewEncoder(os.Stdout).Encode(result{Err: err.Error()})
			os.Exit(1)
		}
		conns[i] = c
	}
	data := benchData
	if *mech == keys.MechECDSA { // takes a digest
		h := sha256.Sum256(data)
		data = h[:]
	}
	payload := make([]byte, echoSize)
	if *op == "cycle" && *cycleKeys > 1 {
		// One untimed pass: a long-lived caller has its polkit decisions
		// cached; this measures that state, not the first contact.
		kc := client.New(conns[0])
		for i := 0; i < *cycleKeys; i++ {
			kc.Key(fmt.Sprintf("%s%d", *keyID, i)).Sign(context.Background(), *mech, data)
		}
	}
	// One untimed call per connection: polkit's first answer is not the
	// steady state either.
	for _, c := range conns {
		switch *op {
		case "echo":
			c.Object(echoName, echoPath).Call(echoInterface+".Echo", 0, payload)
		case "sign":
			client.New(c).Key(*keyID).Sign(context.Background(), *mech, data)
		}
	}
	start := time.Now()
	deadline := start.Add(*duration)
	for _, c := range conns {
		wg.Add(1)
		go func(c *godbus.Conn) {
			defer wg.Done()
			kc := client.New(c)
			key := kc.Key(*keyID)
			echo := c.Object(echoName, echoPath)
			ctx := context.Background()
			for time.Now().Before(deadline) {
				var err error
				switch *op {
				case "echo":
					var out []byte
					err = echo.Call(echoInterface+".Echo", 0, payload).Store(&out)
					if err == nil && len(out) != len(payload) {
						err = fmt.Errorf("echo returned %d bytes", len(out))
					}
				case "cycle":
					_, err = kc.Key(fmt.Sprintf("%s%d", *keyID, ops.Load()%int64(*cycleKeys))).Sign(ctx, *mech, data)
				default:
					_, err = key.Sign(ctx, *mech, data)
				}
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				ops.Add(1)
			}
		}(c)
	}
	wg.Wait()
	r := result{Ops: ops.Load(), Secs: time.Since(start).Seconds(), Errors: errs.Load()}
	if e, ok := firstErr.Load().(string); ok {
		r.Err = e
	}
	json.NewEncoder(os.Stdout).Encode(r)
}

// loadClient runs this binary in client mode as the ordinary test user
// (polkit authorization on) and returns its ops/s.
func loadClient(p *testenv.Program, b *testenv.Bus, self string, args ...string) (float64, error) {
	return loadClientEnv(p, b, self, nil, args...)
}

// loadClientEnv is loadClient with env added to the client's environment.
func loadClientEnv(p *testenv.Program, b *testenv.Bus, self string, env []string, args ...string) (float64, error) {
	ouid, ogid := testenv.EnsureUser(p, testenv.OtherUser)
	cmd := exec.Command(self, append([]string{"-client", "-address", b.Address}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(ouid), Gid: uint32(ogid), Groups: []uint32{}}}
	var stderr strings.Builder // what a PKCS#11 module logs on failure
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var r result
	if jerr := json.Unmarshal(out, &r); jerr != nil {
		return 0, fmt.Errorf("load client %v: %v %v: %s%s", args, err, jerr, out, stderr.String())
	}
	if r.Errors > 0 || r.Err != "" {
		return 0, fmt.Errorf("load client %v: %d errors, first: %s\n%s", args, r.Errors, r.Err, stderr.String())
	}
	return float64(r.Ops) / r.Secs, nil
}

// report is everything printed, also written as JSON.
type report struct {
	Commit  string    `json:"commit"`
	Date    time.Time `json:"date"`
	Cores   int       `json:"cores"`
	Sample  string    `json:"sample"`
	Reps    int       `json:"reps"`
	Rows    []row     `json:"rows"`
	Memory  []rss     `json:"memory"`
	Notes   []string  `json:"notes"`
	Elapsed string    `json:"elapsed"`
}

// rss is a daemon's resident memory at one moment, in MiB.
type rss struct {
	Daemon string  `json:"daemon"`
	When   string  `json:"when"` // "idle", "after load"
	MiB    float64 `json:"mib"`
	// AnonMiB is the anonymous part of MiB (heaps, stacks: the process's
	// own memory); the rest is mapped files, mostly code, shared and clean.
	AnonMiB float64 `json:"anon_mib"`
	Goal    *goal   `json:"goal,omitempty"`
}

func rssOf(svc *testenv.Service, daemon, when string, limit float64) rss {
	r := rss{Daemon: daemon, When: when, MiB: float64(svc.RSSKiB()) / 1024, AnonMiB: float64(anonKiB(svc.Pid())) / 1024}
	if limit > 0 {
		r.Goal = &goal{Text: fmt.Sprintf("≤ %.0f MiB", limit), Max: limit, Met: r.MiB > 0 && r.MiB <= limit}
	}
	return r
}

func bench(p *testenv.Program) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("run as root: the benchmark starts dbus-daemon, polkitd and the services under their own users")
	}
	t0 := time.Now()
	rep := &report{Date: t0.UTC(), Cores: runtime.NumCPU(), Sample: sample.String(), Reps: *reps}
	if out, err := exec.Command("git", "-C", testenv.RepoRoot(), "describe", "--always", "--dirty").Output(); err == nil {
		rep.Commit = strings.TrimSpace(string(out))
	}
	testenv.EnsureUser(p, testenv.ServiceUser)
	testenv.EnsureUser(p, testenv.OtherUser)
	b := testenv.StartBus(p)
	pk := testenv.StartPolkit(p, b)
	// Authorization is on: the load clients are an ordinary user that a rule
	// allows to use the benchmark keys, so every Sign goes through the cache.
	pk.AddRule(p, "bench", fmt.Sprintf(`polkit.addRule(function(action, subject) {
  if (action.id == "org.edgev2.keys.use" && subject.user == %q &&
      action.lookup("key_id").indexOf("bench-") == 0) { return polkit.Result.YES; }
});`, testenv.OtherUser))
	self := testenv.BuildBinary(p, "./internal/bench")
	dir := testenv.SharedTempDir(p, "bench")
	env := &benchEnv{p: p, b: b, pk: pk, self: self, dir: dir, rep: rep}
	// keys, session and pkcs11mod each start and stop their own keyd on the
	// run's SoftHSM token; certs starts the keyd the later parts keep.
	parts := []struct {
		name string
		run  func(*benchEnv) error
	}{
		{"keys", keyRows}, {"session", sessionRows}, {"pkcs11mod", pkcs11modRows}, {"certs", certRows}, {"identity", identityRows}, {"modules", moduleRows}, {"keyscale", keyScaleRows},
	}
	var failed error
	for _, part := range parts {
		if !want(part.name) {
			continue
		}
		fmt.Fprintf(os.Stderr, "bench: %s ... (%s so far)\n", part.name, time.Since(t0).Round(time.Second))
		if err := part.run(env); err != nil {
			failed = fmt.Errorf("%s: %w", part.name, err)
			rep.Notes = append(rep.Notes, "ERROR in "+failed.Error())
			break
		}
	}
	// The services a part kept for the next are stopped in any case.
	stopKept(p)
	// Parts make their rows before or after measuring; each is judged on
	// all its samples.
	rejudge(rep.Rows)
	rep.Elapsed = time.Since(t0).Round(time.Second).String()
	printReport(os.Stdout, rep)
	if *jsonOut != "" {
		data, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(*jsonOut, append(data, '\n'), 0o644); err != nil {
			return err
		}
	}
	return failed
}

// benchEnv is what every part shares.
type benchEnv struct {
	p    *testenv.Program
	b    *testenv.Bus
	pk   *testenv.Polkit
	self string
	dir  string
	rep  *report
	tok  *testenv.SoftHSMToken // token returns it
	// The chain the later parts stand on: keyd and certd (certRows),
	// identityd provisioned (identityRows), with module bench-mod's
	// derivation for SignDerived.
	keyd, certd, identityd *testenv.Service
	derivation             []byte
}

// token is the one SoftHSM token of the run, made at first use: the parts
// that sign on SoftHSM share it, as they share the SoftHSM module loaded
// in this process and the p11-kit server.
func (e *benchEnv) token() *testenv.SoftHSMToken {
	if e.tok == nil {
		uid, gid := testenv.EnsureUser(e.p, testenv.ServiceUser)
		e.tok = testenv.NewSoftHSMToken(e.p, "edgev2-bench", uid, gid)
	}
	return e.tok
}

func (e *benchEnv) add(rows ...row)  { e.rep.Rows = append(e.rep.Rows, rows...) }
func (e *benchEnv) note(n ...string) { e.rep.Notes = append(e.rep.Notes, n...) }
func (e *benchEnv) mem(m ...rss)     { e.rep.Memory = append(e.rep.Memory, m...) }

// kept are the services that rows after the one that started them use
// (keyd and certd under identityd and modrtd); stopKept stops them.
var kept []*testenv.Service

func keep(s *testenv.Service) *testenv.Service {
	kept = append(kept, s)
	return s
}

// stopKept stops the kept services, last started first; Stop waits until
// the bus has released each one's name, so the next instance owns it.
func stopKept(p *testenv.Program) {
	for i := len(kept) - 1; i >= 0; i-- {
		if kept[i].IsRunning() {
			kept[i].Stop(p)
		}
	}
	kept = nil
}

// parallel runs fn on c goroutines for d and returns calls/s.
func parallel(c int, d time.Duration, fn func(worker int) error) (float64, error) {
	var ops atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for i := 0; i < c; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if err := fn(i); err != nil {
					first.CompareAndSwap(nil, err)
					return
				}
				ops.Add(1)
			}
		}(i)
	}
	wg.Wait()
	if err, ok := first.Load().(error); ok {
		return 0, err
	}
	return float64(ops.Load()) / time.Since(start).Seconds(), nil
}
