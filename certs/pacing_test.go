package certs

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgev2/edgev2/certs/config"
	labest "github.com/edgev2/edgev2/internal/labcloud/est"
	"github.com/edgev2/edgev2/internal/testenv"
)

// countingEST runs labcloud's EST CA and counts the requests per operation.
type countingEST struct {
	url   string
	caPEM []byte
	srv   *labest.Server
	mu    sync.Mutex
	ops   map[string]int
}

func startCountingEST(t *testing.T, cfg labest.Config) *countingEST {
	return startCountingESTIn(t, cfg, t.TempDir())
}

func startCountingESTIn(t *testing.T, cfg labest.Config, stateDir string) *countingEST {
	t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	c := &countingEST{url: "https://" + ts.Listener.Addr().String(), ops: map[string]int{}}
	cfg.BaseURL = c.url
	srv, err := labest.NewServer(cfg, stateDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := srv.TLSConfig("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	h := srv.Handler()
	ts.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
		c.mu.Lock()
		c.ops[op]++
		c.mu.Unlock()
		h.ServeHTTP(w, r)
	})
	ts.TLS = tlsCfg
	ts.StartTLS()
	t.Cleanup(ts.Close)
	c.srv, c.caPEM = srv, srv.CAPEM()
	return c
}

func (c *countingEST) count(op string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ops[op]
}

// store opens a certificate store in dir holding the CA's certificate as
// est-ca.
func (c *countingEST) store(t *testing.T, dir string) *Store {
	t.Helper()
	store, err := OpenStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Put("est-ca", string(c.caPEM)); err != nil {
		t.Fatal(err)
	}
	return store
}

// estConfig is certd's config (home dir) for the EST CA at url trusted as
// est-ca, Basic user dev, issuing device-id over EST; est is more of the
// [est] table, issuance follows device-id's table.
func estConfig(t *testing.T, dir, url, est, issuance string) *config.Config {
	t.Helper()
	c, err := config.Parse("certd.toml", []byte(fmt.Sprintf(`homedir = %q
[est]
url = "%s/.well-known/est"
trusted_certs = ["est-ca"]
username = "dev"
password = "pw"
%s[cert_issuance.device-id]
method = "est"
common_name = "device-1"
%s`, dir, url, est, issuance)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A CA that caps lifetimes below the renewal threshold must not drive
// certd into a re-enrollment loop (the issue measured 141 requests in 5 s
// against labcloud): over a fixed window the server sees a bounded number
// of simplereenroll requests, and the certificate stays valid and usable.
func TestRenewalIsPacedWhenTheCACapsLifetimeBelowTheThreshold(t *testing.T) {
	// labcloud backdates notBefore by a minute, so "10s" is a 70 s lifetime,
	// far below the 10-day threshold the device was configured with.
	est := startCountingEST(t, labest.Config{Users: []labest.User{{Name: "dev", Password: "pw"}}, Validity: labest.Duration(10 * time.Second)})
	dir := t.TempDir()
	cfg := estConfig(t, dir, est.url, "", `[cert_issuance.device-id.auto_renew]
threshold = "10d"
min_interval = "2s"
rotate_key = true
`)
	store := est.store(t, dir)
	logs := &testenv.Buffer{}
	keys := newFakeKeys()
	svc := NewService(store, keys, cfg, RealClock, slog.New(slog.NewTextHandler(logs, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first, err := svc.Ensure(ctx, "device-id")
	if err != nil {
		t.Fatal(err)
	}
	if !first.RenewAt.After(time.Now()) || !first.RenewAt.Before(first.Leaf().NotAfter) {
		t.Fatalf("RenewAt %v: want in the future and before notAfter %v", first.RenewAt, first.Leaf().NotAfter)
	}

	const window = 6 * time.Second
	done := make(chan struct{})
	go func() { svc.Run(ctx); close(done) }()
	time.Sleep(window)
	cancel()
	<-done

	// At most one renewal per min_interval (plus the edges of the window).
	reenrolls := est.count("simplereenroll")
	if limit := int(window/(2*time.Second)) + 2; reenrolls > limit {
		t.Fatalf("%d simplereenroll requests in %v; paced renewal allows at most %d", reenrolls, window, limit)
	}
	if reenrolls == 0 {
		t.Fatal("no renewal happened although the certificate was due")
	}
	// Nothing lost: a certificate is stored, valid, and its key is in place.
	info, err := store.Get("device-id")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := keys.Signer(context.Background(), "device-id")
	if err != nil || !samePublicKey(info.Leaf().PublicKey, signer.Public()) {
		t.Fatalf("the stored certificate does not match the key in place: %v", err)
	}
	if !time.Now().Before(info.Leaf().NotAfter) {
		t.Fatal("the stored certificate expired")
	}
	if n := strings.Count(logs.String(), "at or below the renewal threshold"); n != 1 {
		t.Fatalf("the pacing was logged %d times, want once:\n%s", n, logs.String())
	}
	t.Logf("%d simplereenroll requests in %v", reenrolls, window)
}

func TestRenewAtIsNeverSoonerThanMinIntervalAfterASuccess(t *testing.T) {
	f := newFixture(t, `
[cert_issuance.short]
method = "self_signed"
expiry = "1h"
[cert_issuance.short.auto_renew]
threshold = "2h"
min_interval = "45min"
`)
	ctx := context.Background()
	info, err := f.svc.Ensure(ctx, "short")
	if err != nil {
		t.Fatal(err)
	}
	leaf := info.Leaf()
	if !f.cfg.Issuance["short"].AutoRenew.Paced(leaf.NotBefore, leaf.NotAfter) {
		t.Fatal("a 1h certificate under a 2h threshold is not paced")
	}
	// Paced at half the lifetime (30 min) would be sooner than the 45 min
	// minimum after the issuance that just succeeded.
	if want := f.clock.Now().Add(45 * time.Minute); !info.RenewAt.Equal(want) {
		t.Fatalf("RenewAt %v, want %v (min_interval after the last success)", info.RenewAt, want)
	}
	if info.RenewAt.After(leaf.NotAfter) {
		t.Fatal("RenewAt after notAfter")
	}
}
