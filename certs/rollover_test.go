package certs

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	labest "github.com/edgev2/edgev2/internal/labcloud/est"
	"github.com/edgev2/edgev2/internal/testenv"
)

// The CA rolls its issuing intermediate over under the same root: the next
// renewal stores the chain through the new intermediate, fetched from
// /cacerts, not the one stored with the old certificate.
func TestRenewalPicksUpTheNewIntermediateAfterACARollover(t *testing.T) {
	state := t.TempDir()
	cfg := labest.Config{Users: []labest.User{{Name: "dev", Password: "pw"}}, Intermediate: true}
	before := startCountingESTIn(t, cfg, state)
	dir := t.TempDir()
	store := before.store(t, dir)
	keys := newFakeKeys()
	service := func(url string) *Service {
		return NewService(store, keys, estConfig(t, dir, url, "crl_check_interval = \"0s\"\n", ""), RealClock, quiet())
	}
	ctx := context.Background()
	first, err := service(before.url).Ensure(ctx, "device-id")
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Chain) != 2 || !first.Chain[1].Equal(before.srv.IssuingCA()) {
		t.Fatalf("first chain: %d certificates", len(first.Chain))
	}
	// Rollover: a new issuing CA under the same root.
	os.Remove(filepath.Join(state, "ca-key.pem"))
	os.Remove(filepath.Join(state, "ca-cert.pem"))
	after := startCountingESTIn(t, cfg, state)
	if !after.srv.CA().Equal(before.srv.CA()) || after.srv.IssuingCA().Equal(before.srv.IssuingCA()) {
		t.Fatal("the test did not roll the intermediate over under the same root")
	}
	renewed, err := service(after.url).Renew(ctx, "device-id")
	if err != nil {
		t.Fatalf("renewal across the rollover (presenting the old chain): %v", err)
	}
	if len(renewed.Chain) != 2 || !renewed.Chain[1].Equal(after.srv.IssuingCA()) {
		t.Fatal("the renewed chain does not go through the new intermediate")
	}
	opensslVerify(t, append(renewed.Chain, after.srv.CA()), after.srv.CA(), renewed.Leaf().NotBefore.Add(1))
	if after.count("cacerts") == 0 {
		t.Fatal("certd did not fetch /cacerts on renewal")
	}
}

// A server refusing a request because the certificate is revoked makes
// certd check the CRL at once, long before its schedule, and re-enroll.
func TestARevokedRefusalTriggersTheCRLCheckAtOnce(t *testing.T) {
	est := startCountingEST(t, labest.Config{Users: []labest.User{{Name: "dev", Password: "pw"}}, Intermediate: true})
	dir := t.TempDir()
	store := est.store(t, dir)
	svc := NewService(store, newFakeKeys(), estConfig(t, dir, est.url, "crl_check_interval = \"24h\"\n", ""), RealClock, quiet())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first, err := svc.Ensure(ctx, "device-id")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { svc.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	testenv.Eventually(t, 30*time.Second, func() bool { return est.count("crl") > 0 }, "no CRL check at start")
	checks := est.count("crl")
	if err := est.srv.Revoke(first.Leaf().SerialNumber); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Renew(ctx, "device-id"); err == nil {
		t.Fatal("simplereenroll with a revoked certificate succeeded")
	}
	// The new certificate is stored a moment before the revocation state
	// is reset (the re-enrollment, then the state): wait for both.
	if !testenv.WaitFor(30*time.Second, func() bool {
		info, err := store.Get("device-id")
		return err == nil && !info.Leaf().Equal(first.Leaf()) && !svc.Revocation("device-id").Revoked
	}) {
		t.Fatalf("not re-enrolled, or still marked revoked, after the revoked refusal (CRL fetched %d times; state %+v)", est.count("crl"), svc.Revocation("device-id"))
	}
	if est.count("crl") <= checks {
		t.Fatal("re-enrolled without a CRL check")
	}
	if st := svc.Revocation("device-id"); st.Revoked || st.CheckedAt.IsZero() {
		t.Fatalf("revocation state after re-enrollment: %+v", st)
	}
}
