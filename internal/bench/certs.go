package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgev2/edgev2/certs"
	cclient "github.com/edgev2/edgev2/certs/client"
	"github.com/edgev2/edgev2/internal/atomicfile"
	labest "github.com/edgev2/edgev2/internal/labcloud/est"
	"github.com/edgev2/edgev2/internal/superconfig"
	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/keys"
	kclient "github.com/edgev2/edgev2/keys/client"
)

// certRows measures local-CA issuance through the bus (CSR in, chain out:
// certd verifies the CSR, signs as the CA through keyd, stores the chain)
// beside the in-process cost of the same work.
func certRows(p *testenv.Program, b *testenv.Bus, pk *testenv.Polkit, dir string) ([]row, error) {
	kuid, kgid := testenv.EnsureUser(p, testenv.ServiceUser)
	cuid, cgid := testenv.EnsureUser(p, testenv.CertsUser)
	mk := func(name string, uid, gid int, extra string) string {
		d := filepath.Join(dir, name)
		os.Mkdir(d, 0o700)
		os.Chown(d, uid, gid)
		cfg := filepath.Join(dir, name+".toml")
		os.WriteFile(cfg, []byte(fmt.Sprintf("homedir = %q\n%s", d, extra)), 0o600)
		os.Chown(cfg, uid, gid)
		return cfg
	}
	keep(testenv.StartService(p, b, testenv.ServiceOptions{Binary: testenv.BuildBinary(p, "./cmd/edgev2-keyd"),
		Args: []string{"--config", mk("certs-keyd", kuid, kgid, ""), "--log-level", "warn"}, User: testenv.ServiceUser, BusName: keys.BusName}))
	estURL, estCA, _ := labest.StartTestServer(p, labest.Config{Users: []labest.User{{Name: "bench", Password: "bench-password"}}})
	caFile := filepath.Join(dir, "est-ca.pem")
	os.WriteFile(caFile, estCA, 0o644)
	certdCfg := fmt.Sprintf(`[preloaded_certs]
est-ca = "file://%s"
[est]
url = "%s/.well-known/est"
trusted_certs = ["est-ca"]
username = "bench"
password = "bench-password"
[cert_issuance.bench-ca]
method = "self_signed"
ca = true
expiry_days = 30
`, caFile, estURL)
	// certd enrolls only configured ids over EST, with their configured subject.
	for i := 0; i < 8; i++ {
		certdCfg += fmt.Sprintf("[cert_issuance.bench-est-%d]\nmethod = \"est\"\ncommon_name = \"bench-leaf\"\n", i)
	}
	// certd's grant, compiled from its config as `edgectl config apply`
	// writes it; and, as an operator would grant it, the caller's key that
	// identityRows has certd self-sign.
	grants, err := superconfig.ServiceRulesFor(superconfig.ServiceConfigs{Certd: []byte(fmt.Sprintf("homedir = %q\n%s", filepath.Join(dir, "certd"), certdCfg))})
	if err != nil {
		return nil, err
	}
	pk.AddRule(p, "bench-certd-grant", string(grants)+fmt.Sprintf(`
polkit.addRule(function(action, subject) {
  if (subject.user == %q && (action.id == "org.edgev2.keys.use" || action.id == "org.edgev2.keys.read") &&
      action.lookup("key_id") == "bench-x509") { return polkit.Result.YES; }
});`, testenv.CertsUser))
	keep(testenv.StartService(p, b, testenv.ServiceOptions{Binary: testenv.BuildBinary(p, "./cmd/edgev2-certd"),
		Args: []string{"--config", mk("certd", cuid, cgid, certdCfg), "--log-level", "warn"},
		User: testenv.CertsUser, BusName: certs.BusName}))
	ctx := context.Background()
	conn := b.Conn(p)
	cc := cclient.New(conn)
	if _, err := cc.Ensure(ctx, "bench-ca"); err != nil {
		return nil, err
	}
	key, err := kclient.New(conn).CreateKeyPair(ctx, "bench-leaf", "ec-p256")
	if err != nil {
		return nil, err
	}
	signer, err := key.Signer(ctx)
	if err != nil {
		return nil, err
	}
	csr, err := certs.NewCSR(signer, pkix.Name{CommonName: "bench-leaf"}, nil)
	if err != nil {
		return nil, err
	}
	var rows []row
	for _, issuer := range []string{"local_ca", "est"} {
		r, err := issuanceRows(p, b, csr, issuer)
		if err != nil {
			return nil, err
		}
		rows = append(rows, r...)
	}
	return rows, nil
}

// issuanceRows measures CreateCertificate through the bus with one issuer.
func issuanceRows(p *testenv.Program, b *testenv.Bus, csr []byte, issuer string) ([]row, error) {
	ctx := context.Background()
	var rows []row
	for _, c := range []int{1, 8} {
		var ops, errs atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		deadline := start.Add(*duration)
		for i := 0; i < c; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				cl := cclient.New(b.Conn(p))
				for time.Now().Before(deadline) {
					o := cclient.CreateOptions{Issuer: issuer, Validity: time.Hour}
					if issuer == "local_ca" {
						o.IssuerCert, o.IssuerKey = "bench-ca", "bench-ca"
					}
					id := fmt.Sprintf("bench-leaf-%d", i)
					if issuer == "est" {
						id = fmt.Sprintf("bench-est-%d", i)
					}
					_, err := cl.Create(ctx, id, csr, o)
					if err != nil {
						errs.Add(1)
						continue
					}
					ops.Add(1)
				}
			}(i)
		}
		wg.Wait()
		if errs.Load() > 0 {
			return nil, fmt.Errorf("%d CreateCertificate (%s) calls failed", errs.Load(), issuer)
		}
		got := float64(ops.Load()) / time.Since(start).Seconds()
		limit := inProcessIssuance(c, csr, "")
		durable := inProcessIssuance(c, csr, p.TempDir())
		figure := "local-CA issuance through the bus"
		if issuer == "est" {
			figure = "EST enrollment (Basic) via certd and labcloud"
		}
		rows = append(rows, row{figure: figure, clients: c, ops: got, limit: durable, limitOf: "in-process + durable write"})
		rows = append(rows, row{figure: "  in-process verify CSR + sign", clients: c, ops: limit})
		rows = append(rows, row{figure: "  in-process + fsynced atomic write (limit)", clients: c, ops: durable})
	}
	return rows, nil
}

// inProcessIssuance is the same work with the CA key in memory: parse and
// verify the CSR, build and sign the certificate.
func inProcessIssuance(c int, csrDER []byte, storeDir string) float64 {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
	ca, _ := x509.ParseCertificate(der)
	return parallel(c, func() error {
		csr, err := certs.ParseCSR(csrDER)
		if err != nil {
			return err
		}
		chain, err := certs.IssueFromCA(csr, []*x509.Certificate{ca}, caKey, certs.Profile{Validity: time.Hour, PathLen: -1}, time.Now())
		if err != nil || storeDir == "" {
			return err
		}
		return atomicfile.WriteFile(filepath.Join(storeDir, "leaf.pem"), []byte(certs.EncodeChain(chain)), 0o600)
	})
}
