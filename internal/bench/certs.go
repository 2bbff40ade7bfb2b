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
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/edgev2/edgev2/certs"
	certsapi "github.com/edgev2/edgev2/certs/api"
	cclient "github.com/edgev2/edgev2/certs/client"
	"github.com/edgev2/edgev2/internal/atomicfile"
	labest "github.com/edgev2/edgev2/internal/labcloud/est"
	"github.com/edgev2/edgev2/internal/superconfig"
	"github.com/edgev2/edgev2/internal/testenv"
	keysapi "github.com/edgev2/edgev2/keys/api"
	kclient "github.com/edgev2/edgev2/keys/client"
)

// certRows measures local-CA issuance through the bus (CSR in, chain out:
// certd verifies the CSR, signs as the CA through keyd, stores the chain)
// beside the in-process cost of the same work.
func certRows(e *benchEnv) error {
	p, b, pk, dir := e.p, e.b, e.pk, e.dir
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
	e.keyd = keep(testenv.StartService(p, b, testenv.ServiceOptions{Binary: testenv.BuildBinary(p, "./cmd/edgev2-keyd"),
		Args: []string{"--config", mk("certs-keyd", kuid, kgid, ""), "--log-level", "warn"}, User: testenv.ServiceUser, BusName: keysapi.BusName}))
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
		return err
	}
	pk.AddRule(p, "bench-certd-grant", string(grants)+fmt.Sprintf(`
polkit.addRule(function(action, subject) {
  if (subject.user == %q && (action.id == "org.edgev2.keys.use" || action.id == "org.edgev2.keys.read") &&
      action.lookup("key_id") == "bench-x509") { return polkit.Result.YES; }
});`, testenv.CertsUser))
	e.certd = keep(testenv.StartService(p, b, testenv.ServiceOptions{Binary: testenv.BuildBinary(p, "./cmd/edgev2-certd"),
		Args: []string{"--config", mk("certd", cuid, cgid, certdCfg), "--log-level", "warn"},
		User: testenv.CertsUser, BusName: certsapi.BusName}))
	time.Sleep(300 * time.Millisecond)
	e.mem(rssOf(e.certd, "certd", "idle", 0))
	ctx := context.Background()
	conn := b.Conn(p)
	cc := cclient.New(conn)
	if _, err := cc.Ensure(ctx, "bench-ca"); err != nil {
		return err
	}
	key, err := kclient.New(conn).CreateKeyPair(ctx, "bench-leaf", "ec-p256")
	if err != nil {
		return err
	}
	signer, err := key.Signer(ctx)
	if err != nil {
		return err
	}
	csr, err := certs.NewCSR(signer, pkix.Name{CommonName: "bench-leaf"}, nil)
	if err != nil {
		return err
	}
	var all []*series
	var rows []row
	durableDir := p.TempDir()
	for _, c := range []int{1, 8} {
		durable := rate("in-process verify CSR + sign + fsynced write", c, func(c int, d time.Duration) (float64, error) {
			return inProcessIssuance(c, d, csr, durableDir)
		})
		all = append(all, durable)
		for _, issuer := range []string{"local_ca", "est"} {
			issuer := issuer
			name := "local-CA issuance through the bus"
			if issuer == "est" {
				name = "EST enrollment (Basic) via certd and labcloud"
			}
			fig := rate(name, c, func(c int, d time.Duration) (float64, error) {
				return issue(p, b, csr, issuer, c, d)
			})
			all = append(all, fig)
			rows = append(rows, against("Certificates: CreateCertificate", fig, durable, nil))
		}
	}
	if err := interleave(*reps, all...); err != nil {
		return err
	}
	e.add(rows...)
	e.mem(rssOf(e.certd, "certd", "after load", 0))
	return nil
}

// issue calls CreateCertificate with one issuer on c connections for d.
func issue(p *testenv.Program, b *testenv.Bus, csr []byte, issuer string, c int, d time.Duration) (float64, error) {
	ctx := context.Background()
	cls := make([]*cclient.Client, c)
	for i := range cls {
		conn, err := godbus.Connect(b.Address)
		if err != nil {
			return 0, err
		}
		defer conn.Close()
		cls[i] = cclient.New(conn)
	}
	return parallel(c, d, func(i int) error {
		o := cclient.CreateOptions{Issuer: issuer, Validity: time.Hour}
		id := fmt.Sprintf("bench-leaf-%d", i)
		if issuer == "local_ca" {
			o.IssuerCert, o.IssuerKey = "bench-ca", "bench-ca"
		} else {
			id = fmt.Sprintf("bench-est-%d", i)
		}
		_, err := cls[i].Create(ctx, id, csr, o)
		return err
	})
}

// inProcessIssuance is the same work with the CA key in memory: parse and
// verify the CSR, build and sign the certificate.
func inProcessIssuance(c int, d time.Duration, csrDER []byte, storeDir string) (float64, error) {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
	ca, _ := x509.ParseCertificate(der)
	return parallel(c, d, func(w int) error {
		csr, err := certs.ParseCSR(csrDER)
		if err != nil {
			return err
		}
		chain, err := certs.IssueFromCA(csr, []*x509.Certificate{ca}, caKey, certs.Profile{Validity: time.Hour, PathLen: -1}, time.Now())
		if err != nil || storeDir == "" {
			return err
		}
		return atomicfile.WriteFile(filepath.Join(storeDir, fmt.Sprintf("leaf-%d.pem", w)), []byte(certsapi.EncodeChain(chain)), 0o600)
	})
}
