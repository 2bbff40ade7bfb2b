package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	godbus "github.com/godbus/dbus/v5"

	cclient "github.com/edgev2/edgev2/certs/client"
	idapi "github.com/edgev2/edgev2/identity/api"
	iclient "github.com/edgev2/edgev2/identity/client"
	"github.com/edgev2/edgev2/internal/labcloud"
	"github.com/edgev2/edgev2/internal/labcloud/dps"
	"github.com/edgev2/edgev2/internal/labcloud/labhost"
	"github.com/edgev2/edgev2/internal/superconfig"
	"github.com/edgev2/edgev2/internal/testenv"
	kclient "github.com/edgev2/edgev2/keys/client"
)

// identityRows measures identityd: start → provisioned from an empty
// state against labcloud's DPS (symmetric key) answering Retry-After 0 and
// 1 s, interleaved, and our own time beyond that Retry-After; the start from
// the warm cache; and GetSasToken beside the Keys SignDerived it rests on.
// keyd and certd are running (certRows).
func identityRows(e *benchEnv) error {
	p, b := e.p, e.b
	ctx := context.Background()
	conn := b.Conn(p)
	kc, cc, ic := kclient.New(conn), cclient.New(conn), iclient.New(conn)
	symKey := []byte("bench-dps-enrollment-key-0123456789")
	if _, err := kc.CreateKey(ctx, "bench-dps", "sign", symKey); err != nil {
		return err
	}
	iuid, igid := testenv.EnsureUser(p, testenv.IdentityUser)
	binary := testenv.BuildBinary(p, "./cmd/edgev2-identityd")
	type setup struct {
		retryAfter int
		home, cfg  string
		cloud      *timedCloud
	}
	var setups []setup
	for _, ra := range []int{0, 1} {
		cloud := startTimedCloud(p, labcloud.Config{DPS: dps.Config{IDScope: "0ne0000bench", RetryAfter: max(ra, 1), ZeroRetryAfter: ra == 0,
			Enrollments: []dps.Enrollment{{RegistrationID: "bench-sym", Attestation: "symmetric_key", PrimaryKey: base64.StdEncoding.EncodeToString(symKey)}}}})
		caID := fmt.Sprintf("bench-cloud-ca-%d", ra)
		if err := cc.Import(ctx, caID, string(cloud.CAPEM)); err != nil {
			return err
		}
		home := filepath.Join(e.dir, fmt.Sprintf("identityd-ra%d", ra))
		text := fmt.Sprintf(`homedir = %q
[provisioning]
source = "dps"
global_endpoint = %q
id_scope = "0ne0000bench"
[provisioning.attestation]
method = "symmetric_key"
registration_id = "bench-sym"
symmetric_key = "bench-dps"
[cloud]
trusted_certs = [%q]
`, home, cloud.URL, caID)
		cfg := filepath.Join(e.dir, fmt.Sprintf("identityd-ra%d.toml", ra))
		os.WriteFile(cfg, []byte(text), 0o600)
		os.Chown(cfg, iuid, igid)
		grants, err := superconfig.ServiceRulesFor(superconfig.ServiceConfigs{Identityd: []byte(text)})
		if err != nil {
			return err
		}
		e.pk.AddRule(p, fmt.Sprintf("bench-identityd-grant-ra%d", ra), string(grants))
		setups = append(setups, setup{ra, home, cfg, cloud})
	}
	opts := func(s setup) testenv.ServiceOptions {
		return testenv.ServiceOptions{Binary: binary, Args: []string{"--config", s.cfg, "--log-level", "warn"},
			User: testenv.IdentityUser, BusName: idapi.BusName}
	}
	// start runs identityd (from an empty state when cold) until provisioned;
	// named and inDPS, when not nil, get the part until identityd owned its
	// name and the time labcloud's DPS spent answering.
	start := func(s setup, cold bool, named, inDPS *series) (float64, error) {
		if cold {
			os.RemoveAll(s.home)
			os.Mkdir(s.home, 0o700)
			os.Chown(s.home, iuid, igid)
		}
		busy0 := s.cloud.busy.Load()
		t0 := time.Now()
		svc := testenv.StartService(p, b, opts(s))
		defer svc.Stop(p)
		if named != nil {
			named.Samples = append(named.Samples, ms(time.Since(t0)))
		}
		if err := waitProvisioned(ctx, ic); err != nil {
			return 0, err
		}
		d := time.Since(t0)
		if inDPS != nil {
			inDPS.Samples = append(inDPS.Samples, ms(time.Duration(s.cloud.busy.Load()-busy0)))
		}
		return ms(d), nil
	}
	var all []*series
	var colds, nameds, inDPSs []*series
	for _, s := range setups {
		s := s
		// Where the time goes: exec until the bus name is owned (process
		// start, keyd's master key, export), the DPS answering (labcloud
		// stores the operation and the assignment durably, and creates the
		// device in its hub), and the rest (certd's trust anchors, TLS, a
		// SAS token per request, the identity cache).
		named := &series{Name: "    of which start → bus name owned", Clients: 1, Unit: "ms"}
		inDPS := &series{Name: "  the DPS's own time (labcloud answering)", Clients: 1, Unit: "ms"}
		cold := millis(fmt.Sprintf("start → provisioned, cold, DPS Retry-After %d s", s.retryAfter), 1, func(int, time.Duration) (float64, error) { return start(s, true, named, inDPS) })
		colds, nameds, inDPSs = append(colds, cold), append(nameds, named), append(inDPSs, inDPS)
		all = append(all, cold)
	}
	warm := millis("start → provisioned from the warm cache", 1, func(int, time.Duration) (float64, error) { return start(setups[1], false, nil, nil) })
	all = append(all, warm)
	if err := interleave(*reps, all...); err != nil {
		return err
	}
	for i, s := range setups {
		// Ours is what is neither the DPS's Retry-After nor the DPS
		// answering; both of those are printed beside it.
		beyond := &series{Name: fmt.Sprintf("  our own time beyond Retry-After %d s and the DPS", s.retryAfter), Clients: 1, Unit: "ms"}
		for j, v := range colds[i].Samples {
			beyond.Samples = append(beyond.Samples, v-float64(s.retryAfter*1000)-inDPSs[i].Samples[j])
		}
		e.add(against("Identity: cold DPS provisioning (symmetric key)", colds[i], nil, nil),
			against("Identity: cold DPS provisioning (symmetric key)", inDPSs[i], nil, nil),
			against("Identity: cold DPS provisioning (symmetric key)", beyond, nil, atMost(100, "≤ 100 ms")),
			against("Identity: cold DPS provisioning (symmetric key)", nameds[i], nil, nil))
	}
	e.add(against("Identity: cold DPS provisioning (symmetric key)", warm, nil, nil))

	// identityd stays up, provisioned, for the modules.
	svc := keep(testenv.StartService(p, b, opts(setups[1])))
	e.identityd = svc
	if err := waitProvisioned(ctx, ic); err != nil {
		return err
	}
	time.Sleep(300 * time.Millisecond)
	e.mem(rssOf(svc, "identityd", "idle", 0))
	m, err := ic.CreateModule(ctx, "bench-mod", "")
	if err != nil {
		return err
	}
	e.derivation = []byte("bench-mod:" + m.GenerationID + ":primary")
	all = nil
	var rows []row
	for _, c := range []int{1, 8} {
		sas := rate("GetSasToken (module) through identityd", c, func(c int, d time.Duration) (float64, error) {
			return loadInProcess(p, b, c, d, func(ic *iclient.Client, kc *kclient.Client) error {
				_, err := ic.SasToken(ctx, "bench-mod", 300)
				return err
			})
		})
		sd := e.signDerived(c)
		all = append(all, sas, sd)
		rows = append(rows, against("Identity: GetSasToken", sas, sd, nil))
	}
	if err := interleave(*reps, all...); err != nil {
		return err
	}
	e.add(rows...)
	e.mem(rssOf(svc, "identityd", "after load", 0))
	return nil
}

// signDerived is keyd SignDerived over the bus with identityd's master key
// and module bench-mod's derivation, called by root in this process.
func (e *benchEnv) signDerived(c int) *series {
	ctx := context.Background()
	return rate("keyd SignDerived over the bus", c, func(c int, d time.Duration) (float64, error) {
		return loadInProcess(e.p, e.b, c, d, func(ic *iclient.Client, kc *kclient.Client) error {
			_, err := kc.Key("identityd-master").SignDerived(ctx, e.derivation, []byte("sr\n1700000000"))
			return err
		})
	})
}

// timedCloud is labcloud.StartTestCloud with the time its handlers spend
// answering summed in busy (ns): what the DPS spends is not ours.
type timedCloud struct {
	URL   string
	CAPEM []byte
	busy  atomic.Int64
}

func startTimedCloud(p *testenv.Program, cfg labcloud.Config) *timedCloud {
	host, ln := labhost.Listen(p)
	svc, err := labcloud.Open(cfg, p.TempDir(), host.Name, nil)
	if err != nil {
		p.Fatalf("start labcloud: %v", err)
	}
	tlsCfg, err := svc.TLSConfig(svc.ServerNames(host.IP.String())...)
	if err != nil {
		p.Fatalf("start labcloud: %v", err)
	}
	c := &timedCloud{URL: "https://" + host.Name, CAPEM: svc.EST.CAPEM()}
	h := svc.Handler()
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t0 := time.Now()
		h.ServeHTTP(w, r)
		c.busy.Add(int64(time.Since(t0)))
	}))
	ts.Listener.Close()
	ts.Listener = ln
	ts.TLS = tlsCfg
	ts.StartTLS()
	p.Cleanup(ts.Close)
	return c
}

func waitProvisioned(ctx context.Context, ic *iclient.Client) error {
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if st, err := ic.State(ctx); err == nil && st == "provisioned" {
			return nil
		}
	}
	info, _ := ic.ProvisioningInfo(ctx)
	return fmt.Errorf("not provisioned in 60 s: %s", info.LastError)
}

// loadInProcess runs fn on c connections (as root) for d.
func loadInProcess(p *testenv.Program, b *testenv.Bus, c int, d time.Duration, fn func(*iclient.Client, *kclient.Client) error) (float64, error) {
	type pair struct {
		ic *iclient.Client
		kc *kclient.Client
	}
	cls := make([]pair, c)
	for i := range cls {
		conn, err := godbus.Connect(b.Address)
		if err != nil {
			return 0, err
		}
		defer conn.Close()
		cls[i] = pair{iclient.New(conn), kclient.New(conn)}
	}
	return parallel(c, d, func(i int) error { return fn(cls[i].ic, cls[i].kc) })
}
