package certs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	labest "github.com/edgev2/edgev2/internal/labcloud/est"
)

// The CA rolls its issuing intermediate over under the same root: the next
// renewal stores the chain through the new intermediate, fetched from
// /cacerts, not the one stored with the old certificate.
func TestRenewalPicksUpTheNewIntermediateAfterACARollover(t *testing.T) {
	state := t.TempDir()
	cfg := labest.Config{Users: []labest.User{{Name: "dev", Password: "pw"}}, Intermediate: true}
	before := startCountingESTIn(t, cfg, state)
	dir := t.TempDir()
	store, err := OpenStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Put("est-ca", string(before.caPEM)); err != nil {
		t.Fatal(err)
	}
	keys := newFakeKeys()
	service := func(url string) *Service {
		c, err := ParseConfig("certd.toml", []byte(fmt.Sprintf(`homedir = %q
[est]
url = "%s/.well-known/est"
trusted_certs = ["est-ca"]
username = "dev"
password = "pw"
crl_check_interval = "0s"
[cert_issuance.device-id]
method = "est"
common_name = "device-1"
`, dir, url)))
		if err != nil {
			t.Fatal(err)
		}
		return NewService(store, keys, c, RealClock, quiet())
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
