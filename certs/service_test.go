package certs

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgev2/edgev2/certs/api"
	"github.com/edgev2/edgev2/certs/config"
	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/internal/testpki"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type fixture struct {
	dir   string
	keys  *fakeKeys
	clock *fakeClock
	cfg   *config.Config
	svc   *Service
	store *Store
}

func newFixture(t *testing.T, configText string) *fixture {
	t.Helper()
	dir := t.TempDir()
	cfg, err := config.Parse("certd.toml", []byte(fmt.Sprintf("homedir = %q\n%s", filepath.Join(dir, "certs"), configText)))
	if err != nil {
		t.Fatal(err)
	}
	store, err := OpenStore(cfg.Homedir, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{dir: dir, keys: newFakeKeys(), clock: newFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), cfg: cfg, store: store}
	f.svc = NewService(store, f.keys, cfg, f.clock, quiet())
	return f
}

func opensslVerify(t *testing.T, chain []*x509.Certificate, root *x509.Certificate, at time.Time) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		testenv.Missing(t, "openssl", err.Error())
	}
	dir := t.TempDir()
	write := func(name string, certs ...*x509.Certificate) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(api.EncodeChain(certs)), 0o600)
		return p
	}
	args := []string{"verify", "-attime", fmt.Sprint(at.Unix()), "-CAfile", write("root.pem", root)}
	if len(chain) > 2 {
		args = append(args, "-untrusted", write("inter.pem", chain[1:len(chain)-1]...))
	}
	args = append(args, write("leaf.pem", chain[0]))
	out, err := exec.Command("openssl", args...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func TestSelfSignedAndLocalCAChainsVerifyWithOpenSSL(t *testing.T) {
	f := newFixture(t, "[local_ca.ca]\nkey = \"ca\"\n")
	ctx := context.Background()
	caKey, _ := f.keys.CreateKeyPair(ctx, "ca", "ec-p256")
	csr, _ := NewCSR(caKey, pkix.Name{CommonName: "edgev2 test CA"}, nil)
	ca, err := f.svc.Create(ctx, "ca", csr, CreateOptions{Issuer: "self_signed", KeyID: "ca", CA: true, Validity: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	opensslVerify(t, ca.Chain, ca.Leaf(), f.clock.Now())
	devKey, _ := f.keys.CreateKeyPair(ctx, "dev", "ec-p256")
	csr, _ = NewCSR(devKey, pkix.Name{CommonName: "device-1"}, []string{"device-1.local"})
	dev, err := f.svc.Create(ctx, "dev", csr, CreateOptions{Issuer: "local_ca", IssuerCert: "ca", IssuerKey: "ca", Validity: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	leaf := dev.Leaf()
	if len(dev.Chain) != 2 || leaf.Subject.CommonName != "device-1" || leaf.DNSNames[0] != "device-1.local" {
		t.Fatalf("chain %d long, leaf %v %v", len(dev.Chain), leaf.Subject, leaf.DNSNames)
	}
	if !leaf.NotAfter.Equal(ca.Leaf().NotAfter) {
		t.Errorf("leaf NotAfter %v runs past the CA's %v", leaf.NotAfter, ca.Leaf().NotAfter)
	}
	if string(leaf.AuthorityKeyId) != string(ca.Leaf().SubjectKeyId) || len(leaf.SubjectKeyId) == 0 {
		t.Error("SKID/AKID not set from the CA")
	}
	if leaf.IsCA || leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		t.Error("leaf usages wrong")
	}
	opensslVerify(t, dev.Chain, ca.Leaf(), f.clock.Now())
}

func TestCreateRefusesBadRequests(t *testing.T) {
	f := newFixture(t, "[local_ca.leaf]\nkey = \"k\"\n[local_ca.missing]\nkey = \"k\"\n")
	ctx := context.Background()
	key, _ := f.keys.CreateKeyPair(ctx, "k", "ec-p256")
	other, _ := f.keys.CreateKeyPair(ctx, "other", "ec-p256")
	good, _ := NewCSR(key, pkix.Name{CommonName: "k"}, nil)
	tampered := append([]byte(nil), good...)
	tampered[len(tampered)-5] ^= 0xff
	forOther, _ := NewCSR(other, pkix.Name{CommonName: "k"}, nil)
	tests := []struct {
		name string
		csr  []byte
		o    CreateOptions
		kind fault.Kind
	}{
		{"empty CSR", nil, CreateOptions{Issuer: "self_signed", KeyID: "k"}, fault.InvalidArgs},
		{"garbage CSR", []byte("<html>not a csr</html>"), CreateOptions{Issuer: "self_signed", KeyID: "k"}, fault.InvalidArgs},
		{"huge CSR", make([]byte, MaxCSR+1), CreateOptions{Issuer: "self_signed", KeyID: "k"}, fault.InvalidArgs},
		{"signature does not verify", tampered, CreateOptions{Issuer: "self_signed", KeyID: "k"}, fault.InvalidArgs},
		{"CSR for a different key", forOther, CreateOptions{Issuer: "self_signed", KeyID: "k"}, fault.InvalidArgs},
		{"unknown issuer", good, CreateOptions{Issuer: "acme"}, fault.InvalidArgs},
		{"self_signed without key", good, CreateOptions{Issuer: "self_signed"}, fault.InvalidArgs},
		{"local_ca without CA", good, CreateOptions{Issuer: "local_ca"}, fault.InvalidArgs},
		{"local_ca with an unconfigured CA", good, CreateOptions{Issuer: "local_ca", IssuerCert: "nope"}, fault.InvalidArgs},
		{"local_ca with a caller's key", good, CreateOptions{Issuer: "local_ca", IssuerCert: "leaf", IssuerKey: "other"}, fault.InvalidArgs},
		{"local_ca with missing CA", good, CreateOptions{Issuer: "local_ca", IssuerCert: "missing"}, fault.NotFound},
		{"validity too long", good, CreateOptions{Issuer: "self_signed", KeyID: "k", Validity: 200 * 365 * 24 * time.Hour}, fault.InvalidArgs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.svc.Create(ctx, "out", tt.csr, tt.o)
			if !fault.Is(err, tt.kind) {
				t.Fatalf("got %v, want %v", err, tt.kind)
			}
		})
	}
	// A leaf certificate is not a CA.
	leafChain, err := f.svc.Create(ctx, "leaf", good, CreateOptions{Issuer: "self_signed", KeyID: "k"})
	if err != nil {
		t.Fatal(err)
	}
	_ = leafChain
	if _, err := f.svc.Create(ctx, "out", forOther, CreateOptions{Issuer: "local_ca", IssuerCert: "leaf"}); !fault.Is(err, fault.InvalidArgs) {
		t.Fatalf("issuing from a non-CA = %v, want InvalidArgs", err)
	}
	if ids, _ := f.svc.List(); len(ids) != 1 {
		t.Fatalf("bad requests stored something: %v", ids)
	}
}

func TestImportRefusesKeysAndGarbageAndKeepsTheOld(t *testing.T) {
	f := newFixture(t, "")
	ctx := context.Background()
	key, _ := f.keys.CreateKeyPair(ctx, "k", "ec-p256")
	csr, _ := NewCSR(key, pkix.Name{CommonName: "k"}, nil)
	info, err := f.svc.Create(ctx, "c", csr, CreateOptions{Issuer: "self_signed", KeyID: "k"})
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := string(testpki.ECKeyPEM(t, testpki.NewKey(t)))
	for name, bad := range map[string]string{
		"private key":       keyPEM,
		"certificate + key": info.PEM() + keyPEM,
		"empty":             "",
		"html":              "<html><body>502 Bad Gateway</body></html>",
		"truncated":         info.PEM()[:len(info.PEM())/2],
		"bad DER in PEM":    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
		"trailing junk":     info.PEM() + "junk",
		"over the size cap": strings.Repeat("A", api.MaxPEM+1),
	} {
		if _, err := f.svc.Import(ctx, "c", bad); !fault.Is(err, fault.InvalidArgs) {
			t.Errorf("%s: got %v, want InvalidArgs", name, err)
		}
	}
	got, err := f.svc.Get(ctx, "c")
	if err != nil || got.Fingerprint() != info.Fingerprint() {
		t.Fatalf("the stored certificate changed after bad imports: %v", err)
	}
}

// waitRenewed waits for n OnRenewed calls, advancing the fake clock to each
// wake-up the renewal loop asks for.
func runRenewals(t *testing.T, f *fixture) (renewed chan string, stop func()) {
	t.Helper()
	renewed = make(chan string, 16)
	f.svc.OnRenewed = func(id string) { renewed <- id }
	// Issuing before the loop runs leaves a wake-up queued; drop it so the
	// loop's first sleep is the schedule's.
	select {
	case <-f.svc.kick:
	default:
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.svc.Run(ctx); close(done) }()
	return renewed, func() { cancel(); <-done }
}

func waitLoop(t *testing.T, f *fixture) {
	t.Helper()
	select {
	case <-f.clock.waiting:
	case <-time.After(10 * time.Second):
		t.Fatal("the renewal loop never went to sleep")
	}
}

const renewingPolicy = `
[cert_issuance.ca]
method = "self_signed"
ca = true
expiry = "1000h"

[cert_issuance.op]
method = "local_ca"
issuer_cert = "ca"
issuer_key = "ca"
expiry = "100s"
[cert_issuance.op.auto_renew]
threshold = "80%%"
retry = "10%%"
rotate_key = %v
`

func TestRenewsAtThresholdWithAndWithoutKeyRotation(t *testing.T) {
	for _, rotate := range []bool{false, true} {
		t.Run(fmt.Sprintf("rotate_key=%v", rotate), func(t *testing.T) {
			f := newFixture(t, fmt.Sprintf(renewingPolicy, rotate))
			ctx := context.Background()
			ca, err := f.svc.Ensure(ctx, "ca")
			if err != nil {
				t.Fatal(err)
			}
			first, err := f.svc.Ensure(ctx, "op")
			if err != nil {
				t.Fatal(err)
			}
			firstKey, _ := f.keys.Signer(ctx, "op")
			life := first.Leaf().NotAfter.Sub(first.Leaf().NotBefore)
			if want := first.Leaf().NotBefore.Add(life * 8 / 10); !first.RenewAt.Equal(want) {
				t.Fatalf("RenewAt = %v, want %v (80%% of the lifetime)", first.RenewAt, want)
			}
			renewed, stop := runRenewals(t, f)
			defer stop()
			waitLoop(t, f)
			// Just before the threshold nothing happens.
			f.clock.Advance(first.RenewAt.Sub(f.clock.Now()) - time.Second)
			select {
			case id := <-renewed:
				t.Fatalf("%s renewed before its threshold", id)
			case <-time.After(100 * time.Millisecond):
			}
			f.clock.Advance(time.Second)
			select {
			case <-renewed:
			case <-time.After(10 * time.Second):
				t.Fatal("not renewed at the threshold")
			}
			second, _ := f.svc.Get(ctx, "op")
			if second.Fingerprint() == first.Fingerprint() || !second.Leaf().NotAfter.After(first.Leaf().NotAfter) {
				t.Fatal("renewal did not produce a newer certificate")
			}
			key, _ := f.keys.Signer(ctx, "op")
			sameKey := samePublicKey(key.Public(), firstKey.Public())
			if rotate == sameKey {
				t.Fatalf("rotate_key=%v but key changed=%v", rotate, !sameKey)
			}
			if !samePublicKey(second.Leaf().PublicKey, key.Public()) {
				t.Fatal("the renewed certificate does not belong to the key under its key id")
			}
			if _, err := f.keys.Signer(ctx, "op.next"); err == nil {
				t.Fatal("the temporary rotation key was left behind")
			}
			opensslVerify(t, second.Chain, ca.Leaf(), f.clock.Now())
		})
	}
}

func TestCAOutageKeepsTheOldCertificateAndRecovers(t *testing.T) {
	f := newFixture(t, fmt.Sprintf(renewingPolicy, true))
	ctx := context.Background()
	if _, err := f.svc.Ensure(ctx, "ca"); err != nil {
		t.Fatal(err)
	}
	first, _ := f.svc.Ensure(ctx, "op")
	firstKey, _ := f.keys.Signer(ctx, "op")
	renewed, stop := runRenewals(t, f)
	defer stop()
	waitLoop(t, f)
	f.keys.setFail("ca", true) // the CA is down
	f.clock.Advance(first.RenewAt.Sub(f.clock.Now()))
	// The attempt fails and the loop schedules a retry.
	var kept Info
	if !testenv.WaitFor(10*time.Second, func() bool {
		kept, _ = f.svc.Get(ctx, "op")
		return kept.RenewAt.After(f.clock.Now())
	}) {
		t.Fatalf("RenewAt %v is not a retry in the future", kept.RenewAt)
	}
	if kept.Fingerprint() != first.Fingerprint() {
		t.Fatal("a failed renewal replaced the certificate")
	}
	if key, _ := f.keys.Signer(ctx, "op"); !samePublicKey(key.Public(), firstKey.Public()) {
		t.Fatal("a failed renewal replaced the key")
	}
	if !kept.RenewAt.After(f.clock.Now()) {
		t.Fatalf("RenewAt %v is not a retry in the future", kept.RenewAt)
	}
	f.keys.setFail("ca", false) // the CA is back
	f.clock.Advance(kept.RenewAt.Sub(f.clock.Now()))
	select {
	case <-renewed:
	case <-time.After(10 * time.Second):
		t.Fatal("not renewed after the CA came back")
	}
	if now, _ := f.svc.Get(ctx, "op"); now.Fingerprint() == first.Fingerprint() {
		t.Fatal("certificate not replaced after recovery")
	}
}

func TestRestartMidScheduleStillRenewsOnTime(t *testing.T) {
	f := newFixture(t, fmt.Sprintf(renewingPolicy, false))
	ctx := context.Background()
	f.svc.Ensure(ctx, "ca")
	first, _ := f.svc.Ensure(ctx, "op")
	// "Restart": a new service over the same store, half-way to the threshold.
	f.clock.Advance(first.RenewAt.Sub(f.clock.Now()) / 2)
	store, _ := OpenStore(f.cfg.Homedir, nil)
	f.svc = NewService(store, f.keys, f.cfg, f.clock, quiet())
	renewed, stop := runRenewals(t, f)
	defer stop()
	waitLoop(t, f)
	if got, _ := f.svc.Get(ctx, "op"); !got.RenewAt.Equal(first.RenewAt) {
		t.Fatalf("after restart RenewAt = %v, want %v", got.RenewAt, first.RenewAt)
	}
	f.clock.Advance(first.RenewAt.Sub(f.clock.Now()))
	select {
	case <-renewed:
	case <-time.After(10 * time.Second):
		t.Fatal("not renewed on time after a restart")
	}
}

func TestInterruptedRotationIsFinishedAtStart(t *testing.T) {
	f := newFixture(t, fmt.Sprintf(renewingPolicy, true))
	ctx := context.Background()
	f.svc.Ensure(ctx, "ca")
	f.svc.Ensure(ctx, "op")
	// Simulate a crash after the new certificate was stored, before MoveKey.
	next, _ := f.keys.CreateKeyPair(ctx, "op.next", "ec-p256")
	csr, _ := NewCSR(next, pkix.Name{CommonName: "op"}, nil)
	if _, err := f.svc.Create(ctx, "op", csr, CreateOptions{Issuer: "local_ca", IssuerCert: "ca", IssuerKey: "ca", Validity: 100 * time.Second}); err != nil {
		t.Fatal(err)
	}
	f.svc.RecoverRotation(ctx)
	key, err := f.keys.Signer(ctx, "op")
	if err != nil || !samePublicKey(key.Public(), next.Public()) {
		t.Fatal("the rotated key was not moved into place")
	}
}

func FuzzParseChainPEM(f *testing.F) {
	f.Add("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		chain, err := api.ParseChainPEM(s)
		if err == nil && len(chain) == 0 {
			t.Fatal("no error and no certificate")
		}
	})
}

func FuzzParseCSR(f *testing.F) {
	f.Add(testpki.CSR(f, testpki.NewKey(f), "x"))
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		if c, err := ParseCSR(der); err == nil && c.CheckSignature() != nil {
			t.Fatal("accepted a request whose signature does not verify")
		}
	})
}

// TestSubCAPathLengthStaysBelowTheIssuers: a CA certificate issued under a
// local CA gets a path length below its issuer's; a CA with path length 0
// issues no CA certificates.
func TestSubCAPathLengthStaysBelowTheIssuers(t *testing.T) {
	f := newFixture(t, "[local_ca.root]\nkey = \"root\"\n[local_ca.mid]\nkey = \"mid\"\n")
	ctx := context.Background()
	csrFor := func(id string) []byte {
		k, _ := f.keys.CreateKeyPair(ctx, id, "ec-p256")
		csr, _ := NewCSR(k, pkix.Name{CommonName: id}, nil)
		return csr
	}
	one := 1
	if _, err := f.svc.Create(ctx, "root", csrFor("root"), CreateOptions{Issuer: "self_signed", KeyID: "root", CA: true, PathLen: one, HasPathLen: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Create(ctx, "x", csrFor("x"), CreateOptions{Issuer: "local_ca", IssuerCert: "root", CA: true, PathLen: 1, HasPathLen: true}); !fault.Is(err, fault.InvalidArgs) || !strings.Contains(err.Error(), "path_len") {
		t.Fatalf("path_len 1 under a CA with path length 1: %v, want InvalidArgs naming path_len", err)
	}
	mid, err := f.svc.Create(ctx, "mid", csrFor("mid"), CreateOptions{Issuer: "local_ca", IssuerCert: "root", CA: true})
	if err != nil {
		t.Fatal(err)
	}
	if l := mid.Leaf(); !l.IsCA || l.MaxPathLen != 0 || !l.MaxPathLenZero {
		t.Fatalf("sub-CA path length %d (zero %v), want 0", l.MaxPathLen, l.MaxPathLenZero)
	}
	if _, err := f.svc.Create(ctx, "y", csrFor("y"), CreateOptions{Issuer: "local_ca", IssuerCert: "mid", CA: true}); !fault.Is(err, fault.InvalidArgs) || !strings.Contains(err.Error(), "path length 0") {
		t.Fatalf("a CA under a path-length-0 CA: %v, want InvalidArgs", err)
	}
	leaf, err := f.svc.Create(ctx, "leaf", csrFor("leaf"), CreateOptions{Issuer: "local_ca", IssuerCert: "mid"})
	if err != nil {
		t.Fatal(err)
	}
	opensslVerify(t, leaf.Chain, leaf.Chain[len(leaf.Chain)-1], f.clock.Now())
	if _, err := f.svc.Create(ctx, "z", csrFor("z"), CreateOptions{Issuer: "local_ca", IssuerCert: "root", PathLen: 0, HasPathLen: true}); !fault.Is(err, fault.InvalidArgs) {
		t.Fatalf("path_len without ca: %v, want InvalidArgs", err)
	}
}

// TestCABindingsMustAgree: two settings binding one CA to different keys,
// or a local_ca issuance whose CA has no key, are configuration errors.
func TestChallengePasswordCSRIsReadByOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		testenv.Missing(t, "openssl", err.Error())
	}
	keys := newFakeKeys()
	signer, _ := keys.CreateKeyPair(context.Background(), "k", "ec-p256")
	der, err := NewCSR(signer, pkix.Name{CommonName: "device-1"}, []string{"device-1.local"})
	if err != nil {
		t.Fatal(err)
	}
	withPW, err := WithChallengePassword(der, signer, "zto-secret")
	if err != nil {
		t.Fatal(err)
	}
	csr, err := ParseCSR(withPW)
	if err != nil || csr.Subject.CommonName != "device-1" || len(csr.DNSNames) != 1 {
		t.Fatalf("the re-signed request lost its subject or SAN: %v", err)
	}
	p := filepath.Join(t.TempDir(), "req.der")
	os.WriteFile(p, withPW, 0o600)
	out, err := exec.Command("openssl", "req", "-inform", "DER", "-in", p, "-verify", "-noout", "-text").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "challengePassword") || !strings.Contains(string(out), "zto-secret") ||
		!strings.Contains(string(out), "verify OK") && !strings.Contains(string(out), "Certificate request self-signature verify OK") {
		t.Fatalf("openssl req: %v\n%s", err, out)
	}
	for _, bad := range []string{"", strings.Repeat("x", 256), "tab\there"} {
		if _, err := WithChallengePassword(der, signer, bad); !fault.Is(err, fault.InvalidArgs) {
			t.Errorf("password %q: %v, want InvalidArgs", bad, err)
		}
	}
}
