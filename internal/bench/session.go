package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/keys"
	"github.com/edgev2/edgev2/keys/client"
)

// sessionReps is how many times each session figure is measured; the
// three ways are interleaved in every repetition so drift hits them alike.
const sessionReps = 5

// sessionRows measures ECDSA-P256 signing on one SoftHSM token three ways
// in the same run: through keyd over the bus, through a direct keyd session
// (Keys1.OpenSession), and through p11-kit RPC (`p11-kit server` +
// p11-kit-client.so, the peer the session has to beat) — at 1 and 8
// clients, each figure the median of sessionReps interleaved runs, with its
// spread in the notes. The clients are uid OtherUser, allowed by polkit rules
// to open sessions and to use the one benchmark key; they run in this
// process, as the p11-kit client does.
func sessionRows(p *testenv.Program, b *testenv.Bus, pk *testenv.Polkit, keyd, dir string) ([]row, []string, error) {
	const keyID = "bench-session-ec"
	uid, gid := testenv.EnsureUser(p, testenv.ServiceUser)
	tok := testenv.NewSoftHSMToken(p, "edgev2-bench-session", uid, gid)
	home := filepath.Join(dir, "session")
	os.Mkdir(home, 0o700)
	os.Chown(home, uid, gid)
	cfgPath := filepath.Join(dir, "session.toml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf("homedir = %q\npkcs11_lib_path = %q\npkcs11_base_slot = %q\n", home, tok.LibPath, tok.URI())), 0o600)
	os.Chown(cfgPath, uid, gid)
	args := []string{"--config", cfgPath, "--log-level", "warn"}
	if d := os.Getenv("EDGEV2_BENCH_PROFILE"); d != "" {
		args = append(args, "--cpuprofile", filepath.Join(d, "keyd-session.pprof"))
	}
	svc := testenv.StartService(p, b, testenv.ServiceOptions{
		Binary: keyd, Args: args,
		User: testenv.ServiceUser, Env: tok.Env(), BusName: keys.BusName,
	})
	defer svc.Stop(p)
	pk.AddRule(p, "bench-session", fmt.Sprintf(`polkit.addRule(function(action, subject) {
  if (subject.user != %q) return polkit.Result.NOT_HANDLED;
  if (action.id == "org.edgev2.keys.session") return polkit.Result.YES;
  if (action.id == "org.edgev2.keys.use" && action.lookup("key_id") == %q) return polkit.Result.YES;
  return polkit.Result.NOT_HANDLED;
});`, testenv.OtherUser, keyID))
	ctx := context.Background()
	if _, err := client.New(b.Conn(p)).CreateKeyPair(ctx, keyID, "ec-p256"); err != nil {
		return nil, nil, err
	}
	digest := sha256.Sum256([]byte("benchmark payload: a SAS token string to sign"))

	const maxClients = 8
	busKeys := make([]*client.Key, maxClients)
	sessKeys := make([]*client.Key, maxClients)
	for i := range maxClients {
		busKeys[i] = client.New(b.ConnAs(p, testenv.OtherUser)).Key(keyID)
		sc := client.New(b.ConnAs(p, testenv.OtherUser)).WithSession()
		defer sc.Close()
		sessKeys[i] = sc.Key(keyID)
		if _, err := sessKeys[i].Sign(ctx, keys.MechECDSA, digest[:]); err != nil {
			return nil, nil, fmt.Errorf("sign through a session: %w", err)
		}
		if !sc.UsingSession() {
			return nil, nil, fmt.Errorf("no session: %v", sc.SessionError())
		}
	}
	rpc, err := newP11KitSigner(p, tok, maxClients)
	if err != nil {
		return nil, nil, err
	}
	defer rpc.close()

	ways := []struct {
		name string
		sign func(worker int) error
	}{
		{"keyd over the bus", func(w int) error { _, err := busKeys[w].Sign(ctx, keys.MechECDSA, digest[:]); return err }},
		{"keyd session", func(w int) error { _, err := sessKeys[w].Sign(ctx, keys.MechECDSA, digest[:]); return err }},
		{"p11-kit RPC", func(w int) error { return rpc.sign(w, digest[:]) }},
	}
	figures := map[string][]float64{}
	cpu := map[string]*cpuUse{}
	for range sessionReps {
		for _, c := range []int{1, maxClients} {
			for _, w := range ways {
				before := sampleCPU(svc.Pid(), b.Pid(), rpc.socket)
				ops, n, err := parallelWorkers(c, w.sign)
				if err != nil {
					return nil, nil, fmt.Errorf("%s at %d clients: %w", w.name, c, err)
				}
				k := fmt.Sprintf("%s/%d", w.name, c)
				figures[k] = append(figures[k], ops)
				if cpu[k] == nil {
					cpu[k] = &cpuUse{}
				}
				cpu[k].add(before, sampleCPU(svc.Pid(), b.Pid(), rpc.socket), n)
			}
		}
	}
	var rows []row
	var notes []string
	for _, c := range []int{1, maxClients} {
		limit := median(figures[fmt.Sprintf("p11-kit RPC/%d", c)])
		for _, w := range ways {
			v := figures[fmt.Sprintf("%s/%d", w.name, c)]
			r := row{figure: "Sign ecdsa-p256 SoftHSM, " + w.name, clients: c, ops: median(v)}
			if w.name != "p11-kit RPC" {
				r.limit, r.limitOf = limit, "p11-kit RPC (median)"
			}
			rows = append(rows, r)
			k := fmt.Sprintf("%s/%d", w.name, c)
			notes = append(notes, fmt.Sprintf("%-20s %d clients: median %6.0f/s, runs %s; %s", w.name, c, median(v), spreadOf(v), cpu[k]))
		}
	}
	return rows, notes, nil
}

// parallelWorkers runs sign in c workers for the figure's duration; worker
// i always uses its own client (connection, session or PKCS#11 session).
func parallelWorkers(c int, sign func(worker int) error) (float64, int, error) {
	type res struct {
		ops int
		err error
	}
	out := make(chan res, c)
	start := time.Now()
	deadline := start.Add(*duration)
	for w := range c {
		go func() {
			n := 0
			for time.Now().Before(deadline) {
				if err := sign(w); err != nil {
					out <- res{n, err}
					return
				}
				n++
			}
			out <- res{n, nil}
		}()
	}
	total := 0
	var first error
	for range c {
		r := <-out
		total += r.ops
		if r.err != nil && first == nil {
			first = r.err
		}
	}
	return float64(total) / time.Since(start).Seconds(), total, first
}

// cpuSample is the CPU time so far of each process on the three paths:
// this process (the clients), keyd, the bus daemon, and p11-kit server
// with the children it forked for connections.
type cpuSample struct{ self, keyd, bus, p11 time.Duration }

func sampleCPU(keydPid, busPid int, p11Socket string) cpuSample {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return cpuSample{
		self: time.Duration(ru.Utime.Nano() + ru.Stime.Nano()),
		keyd: cpuTime(keydPid), bus: cpuTime(busPid), p11: p11KitCPU(p11Socket),
	}
}

// p11KitCPU sums the CPU time of the processes serving p11Socket (the
// server forks one per connection, with the same command line).
func p11KitCPU(p11Socket string) time.Duration {
	var sum time.Duration
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmd), p11Socket) {
			sum += cpuTime(pid)
		}
	}
	return sum
}

// cpuUse accumulates CPU per operation of one figure over its runs.
type cpuUse struct {
	ops                    int
	client, keyd, bus, p11 time.Duration
}

func (u *cpuUse) add(a, b cpuSample, ops int) {
	u.ops += ops
	u.client += b.self - a.self
	u.keyd += b.keyd - a.keyd
	u.bus += b.bus - a.bus
	u.p11 += b.p11 - a.p11
}

func (u *cpuUse) String() string {
	if u == nil || u.ops == 0 {
		return "no CPU figures"
	}
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(u.ops) }
	return fmt.Sprintf("CPU µs/op: clients %.0f, dbus-daemon %.0f, keyd %.0f, p11-kit server %.0f, total %.0f",
		per(u.client), per(u.bus), per(u.keyd), per(u.p11), per(u.client+u.bus+u.keyd+u.p11))
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// spreadOf lists the runs and their min–max as a share of the median.
func spreadOf(v []float64) string {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprintf("%.0f", x)
	}
	m := median(v)
	if m == 0 {
		return strings.Join(parts, " ")
	}
	return fmt.Sprintf("%s (min–max %.0f%% of the median)", strings.Join(parts, " "), 100*(s[len(s)-1]-s[0])/m)
}

// p11KitSigner signs through p11-kit-client.so against `p11-kit server`
// serving the same token, one PKCS#11 session per worker.
type p11KitSigner struct {
	socket   string
	ctx      *pkcs11.Ctx
	sessions []pkcs11.SessionHandle
	key      pkcs11.ObjectHandle
}

func newP11KitSigner(p *testenv.Program, tok *testenv.SoftHSMToken, workers int) (*p11KitSigner, error) {
	srv := testenv.StartP11KitServer(p, tok, testenv.ServiceUser)
	for _, e := range srv.Env() {
		k, v, _ := strings.Cut(e, "=")
		os.Setenv(k, v)
	}
	c := pkcs11.New(srv.ClientLib)
	if c == nil {
		return nil, fmt.Errorf("load %s", srv.ClientLib)
	}
	if err := c.Initialize(); err != nil {
		return nil, fmt.Errorf("p11-kit client: %w", err)
	}
	s := &p11KitSigner{ctx: c, socket: srv.Socket}
	slots, err := c.GetSlotList(true)
	if err != nil || len(slots) == 0 {
		return nil, fmt.Errorf("p11-kit client sees no token: %v", err)
	}
	var slot uint
	found := false
	for _, sl := range slots {
		if ti, err := c.GetTokenInfo(sl); err == nil && strings.TrimRight(ti.Label, " ") == tok.Label {
			slot, found = sl, true
		}
	}
	if !found {
		return nil, fmt.Errorf("p11-kit client: no token %q", tok.Label)
	}
	for range workers {
		sh, err := c.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			return nil, err
		}
		s.sessions = append(s.sessions, sh)
	}
	if err := c.Login(s.sessions[0], pkcs11.CKU_USER, tok.PIN); err != nil && err != pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN) {
		return nil, fmt.Errorf("p11-kit client login: %w", err)
	}
	params, _ := asn1P256()
	_, key, err := c.GenerateKeyPair(s.sessions[0], []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_EC_KEY_PAIR_GEN, nil)},
		[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params), pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true)},
		append(tokenKey("bench-p11kit-ec"), pkcs11.NewAttribute(pkcs11.CKA_SIGN, true)))
	if err != nil {
		return nil, fmt.Errorf("p11-kit client key generation: %w", err)
	}
	s.key = key
	return s, nil
}

func (s *p11KitSigner) sign(worker int, digest []byte) error {
	sh := s.sessions[worker]
	if err := s.ctx.SignInit(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}, s.key); err != nil {
		return err
	}
	_, err := s.ctx.Sign(sh, digest)
	return err
}

func (s *p11KitSigner) close() {
	for _, sh := range s.sessions {
		s.ctx.CloseSession(sh)
	}
	s.ctx.Finalize()
}
