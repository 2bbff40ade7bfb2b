package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/keys"
	"github.com/edgev2/edgev2/keys/client"
)

// pkcs11modRows measures C_Sign (CKM_ECDSA, P-256, on a SHA-256 digest)
// through libedgev2-pkcs11.so — which forwards to keyd over the bus, keyd
// signing on the SoftHSM token — beside the same key on the same token
// through p11-kit's RPC (`p11-kit server` + p11-kit-client.so, in this
// process) and beside keyd Sign over the bus, at 1 and 8 threads, each
// thread with its own session. The module and the bus clients are a
// process of uid OtherUser, allowed the key by the benchmark's polkit rule.
// No issue sets a goal for it.
func pkcs11modRows(e *benchEnv) error {
	p, b := e.p, e.b
	const keyID = "bench-p11mod-ec"
	tok := e.token()
	svc := keep(startKeyd(e, "p11mod", tok))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := client.New(b.Conn(p)).CreateKeyPair(ctx, keyID, "ec-p256"); err != nil {
		return fmt.Errorf("create %s: %w", keyID, err)
	}
	modDir := filepath.Join(e.dir, "p11mod-lib")
	os.Mkdir(modDir, 0o755)
	if out, err := exec.Command("make", "-s", "--no-print-directory", "-C", testenv.RepoRoot(), "pkcs11mod", "BIN="+modDir).CombinedOutput(); err != nil {
		return fmt.Errorf("make pkcs11mod: %v\n%s", err, out)
	}
	lib := filepath.Join(modDir, "libedgev2-pkcs11.so")
	srv := p11kitServer(p, tok)
	rpc, err := findECSigner(srv.ClientLib, append(tok.Env(), srv.Env()...), tok.Label, tok.PIN, keyID)
	if err != nil {
		return fmt.Errorf("the key through p11-kit-client.so: %w", err)
	}
	const section = "PKCS#11 module: C_Sign ecdsa-p256 through libedgev2-pkcs11.so (keyd on SoftHSM)"
	var all []*series
	type group struct{ mod, overBus, rpc *series }
	var groups []group
	for _, c := range []int{1, 8} {
		viaMod := rate("C_Sign via libedgev2-pkcs11.so", c, func(c int, d time.Duration) (float64, error) {
			// A Go host: its preemption signal (SIGURG) interrupts the
			// module's waits, which must not fail the call (p11host signals).
			return loadClientEnv(p, b, e.self, []string{"DBUS_SYSTEM_BUS_ADDRESS=" + b.Address},
				"-op", "pkcs11", "-module", lib, "-token", "edgev2", "-key", keyID, "-c", fmt.Sprint(c), "-d", d.String())
		})
		overBus := rate("keyd Sign over the bus, same key", c, func(c int, d time.Duration) (float64, error) {
			return loadClient(p, b, e.self, "-op", "sign", "-key", keyID, "-mech", keys.MechECDSA, "-c", fmt.Sprint(c), "-d", d.String())
		})
		viaRPC := rate("p11-kit RPC C_Sign, same key", c, rpc.probe)
		all = append(all, viaMod, overBus, viaRPC)
		groups = append(groups, group{viaMod, overBus, viaRPC})
	}
	if err := interleave(*reps, all...); err != nil {
		return err
	}
	for _, g := range groups {
		e.add(against(section, g.mod, g.rpc, nil), against(section, g.mod, g.overBus, nil))
	}
	svc.Stop(p)
	return nil
}

// runPKCS11Client (client mode, -op pkcs11) loads -module, finds the EC
// key labelled -key on the token labelled -token and signs a SHA-256
// digest with CKM_ECDSA on -c threads, one session each, for -d.
func runPKCS11Client() {
	out := json.NewEncoder(os.Stdout)
	fail := func(err error) {
		out.Encode(result{Errors: 1, Err: err.Error()})
		os.Exit(1)
	}
	if *conc < 1 || *conc > 8 {
		fail(fmt.Errorf("-c %d: the pkcs11 op signs on 1 to 8 sessions", *conc))
	}
	t, err := findECSigner(*module, nil, *tokenLabel, "", *keyID)
	if err != nil {
		fail(err)
	}
	// Untimed, as the bus clients' first calls: the module opens its bus
	// connections as threads need them, and keyd asks polkit once for each.
	if _, err := parallel(*conc, 100*time.Millisecond, t.sign); err != nil {
		fail(err)
	}
	var n atomic.Int64
	start := time.Now()
	_, err = parallel(*conc, *duration, func(w int) error {
		if err := t.sign(w); err != nil {
			return err
		}
		n.Add(1)
		return nil
	})
	r := result{Ops: n.Load(), Secs: time.Since(start).Seconds()}
	if err != nil {
		r.Errors, r.Err = 1, err.Error()
	}
	out.Encode(r)
}
