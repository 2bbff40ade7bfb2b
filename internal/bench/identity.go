package main

import (
	"context"
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgev2/edgev2/certs"
	cclient "github.com/edgev2/edgev2/certs/client"
	"github.com/edgev2/edgev2/identity"
	iclient "github.com/edgev2/edgev2/identity/client"
	"github.com/edgev2/edgev2/internal/labcloud"
	"github.com/edgev2/edgev2/internal/labcloud/dps"
	"github.com/edgev2/edgev2/internal/superconfig"
	"github.com/edgev2/edgev2/internal/testenv"
	kclient "github.com/edgev2/edgev2/keys/client"
)

// identityRows measures identityd: start to provisioned against labcloud
// (DPS symmetric key and X.509), start from a warm cache, and GetSasToken
// beside the Keys SignDerived it rests on. keyd and certd are already up.
func identityRows(p *testenv.Program, b *testenv.Bus, pk *testenv.Polkit, dir string) ([]row, []string, error) {
	ctx := context.Background()
	conn := b.Conn(p)
	kc, cc, ic := kclient.New(conn), cclient.New(conn), iclient.New(conn)
	symKey := []byte("bench-dps-enrollment-key-0123456789")
	if _, err := kc.CreateKey(ctx, "bench-dps", "sign", symKey); err != nil {
		return nil, nil, err
	}
	xk, err := kc.CreateKeyPair(ctx, "bench-x509", "ec-p256")
	if err != nil {
		return nil, nil, err
	}
	signer, _ := xk.Signer(ctx)
	csr, _ := certs.NewCSR(signer, pkix.Name{CommonName: "bench-x509"}, nil)
	xpem, err := cc.Create(ctx, "bench-x509", csr, cclient.CreateOptions{Issuer: "self_signed", KeyID: "bench-x509", Validity: time.Hour})
	if err != nil {
		return nil, nil, err
	}
	chain, _ := certs.ParseChainPEM(xpem)
	sum := sha256.Sum256(chain[0].Raw)
	cloud := labcloud.StartTestCloud(p, labcloud.Config{DPS: dps.Config{IDScope: "0ne0000bench", RetryAfter: 1,
		Enrollments: []dps.Enrollment{
			{RegistrationID: "bench-sym", Attestation: "symmetric_key", PrimaryKey: base64.StdEncoding.EncodeToString(symKey)},
			{RegistrationID: "bench-x509", Attestation: "x509", CertificateThumbprint: strings.ToUpper(hex.EncodeToString(sum[:]))},
		}}})
	if err := cc.Import(ctx, "bench-cloud-ca", string(cloud.CAPEM)); err != nil {
		return nil, nil, err
	}
	iuid, igid := testenv.EnsureUser(p, testenv.IdentityUser)
	var notes []string
	var rows []row
	var symSvc *testenv.Service
	for _, att := range []string{"symmetric_key", "x509"} {
		home := filepath.Join(dir, "identityd-"+att)
		os.Mkdir(home, 0o700)
		os.Chown(home, iuid, igid)
		attest := "registration_id = \"bench-sym\"\nsymmetric_key = \"bench-dps\"\n"
		if att == "x509" {
			attest = "identity_cert = \"bench-x509\"\nidentity_pk = \"bench-x509\"\n"
		}
		cfg := filepath.Join(dir, "identityd-"+att+".toml")
		text := fmt.Sprintf(`homedir = %q
[provisioning]
source = "dps"
global_endpoint = %q
id_scope = "0ne0000bench"
[provisioning.attestation]
method = %q
%s[cloud]
trusted_certs = ["bench-cloud-ca"]
`, home, cloud.URL, att, attest)
		os.WriteFile(cfg, []byte(text), 0o600)
		os.Chown(cfg, iuid, igid)
		grants, err := superconfig.ServiceRulesFor(superconfig.ServiceConfigs{Identityd: []byte(text)})
		if err != nil {
			return nil, nil, err
		}
		pk.AddRule(p, "bench-identityd-grant-"+strings.ReplaceAll(att, "_", "-"), string(grants))
		opts := testenv.ServiceOptions{Binary: testenv.BuildBinary(p, "./cmd/edgev2-identityd"), Args: []string{"--config", cfg, "--log-level", "warn"},
			User: testenv.IdentityUser, BusName: identity.BusName}
		start := time.Now()
		svc := testenv.StartService(p, b, opts)
		if err := waitProvisioned(ctx, ic); err != nil {
			return nil, nil, fmt.Errorf("identityd (%s): %w", att, err)
		}
		cold := time.Since(start)
		svc.Stop(p)
		start = time.Now()
		svc.Restart(p)
		if err := waitProvisioned(ctx, ic); err != nil {
			return nil, nil, err
		}
		warm := time.Since(start)
		notes = append(notes, fmt.Sprintf("identityd start → provisioned, DPS %s: %v cold (labcloud's DPS asks for Retry-After: 1 s, the floor), %v from the warm cache",
			att, cold.Round(time.Millisecond), warm.Round(time.Millisecond)))
		svc.Stop(p) // one identityd at a time: they share the bus name
		if att == "symmetric_key" {
			symSvc = svc
		}
	}
	// GetSasToken for a module beside the Keys SignDerived it makes.
	symSvc.Restart(p)
	keep(symSvc)
	if err := waitProvisioned(ctx, ic); err != nil {
		return nil, nil, err
	}
	m, err := ic.CreateModule(ctx, "bench-mod", "")
	if err != nil {
		return nil, nil, err
	}
	derivation := []byte("bench-mod:" + m.S("generation_id") + ":primary")
	for _, c := range []int{1, 8} {
		got, err := loadInProcess(p, b, c, func(ic *iclient.Client, kc *kclient.Client) error {
			_, err := ic.SasToken(ctx, "bench-mod", 300)
			return err
		})
		if err != nil {
			return nil, nil, err
		}
		limit, err := loadInProcess(p, b, c, func(ic *iclient.Client, kc *kclient.Client) error {
			_, err := kc.Key("identityd-master").SignDerived(ctx, derivation, []byte("sr\n1700000000"))
			return err
		})
		if err != nil {
			return nil, nil, err
		}
		rows = append(rows, row{figure: "GetSasToken (module) through identityd", clients: c, ops: got, limit: limit, limitOf: "Keys SignDerived"})
		rows = append(rows, row{figure: "  Keys SignDerived over the bus (limit)", clients: c, ops: limit})
	}
	return rows, notes, nil
}

func waitProvisioned(ctx context.Context, ic *iclient.Client) error {
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if st, err := ic.State(ctx); err == nil && st == "provisioned" {
			return nil
		}
	}
	info, _ := ic.ProvisioningInfo(ctx)
	return fmt.Errorf("not provisioned in 60 s: %s", info.S("last_error"))
}

// loadInProcess runs fn on c connections (as root) for the measurement time.
func loadInProcess(p *testenv.Program, b *testenv.Bus, c int, fn func(*iclient.Client, *kclient.Client) error) (float64, error) {
	var ops, errs atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(*duration)
	for i := 0; i < c; i++ {
		conn := b.Conn(p)
		ic, kc := iclient.New(conn), kclient.New(conn)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if err := fn(ic, kc); err != nil {
					errs.Add(1)
					first.CompareAndSwap(nil, err.Error())
					continue
				}
				ops.Add(1)
			}
		}()
	}
	wg.Wait()
	if errs.Load() > 0 {
		return 0, fmt.Errorf("%d calls failed, first: %v", errs.Load(), first.Load())
	}
	return float64(ops.Load()) / time.Since(start).Seconds(), nil
}
