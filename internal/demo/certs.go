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
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgev2/edgev2/certs"
	certsapi "github.com/edgev2/edgev2/certs/api"
	cclient "github.com/edgev2/edgev2/certs/client"
	"github.com/edgev2/edgev2/internal/superconfig"
	"github.com/edgev2/edgev2/internal/testenv"
	kclient "github.com/edgev2/edgev2/keys/client"
)

// certSteps is the seeds' certificate half of zero-touch provisioning: a
// factory bootstrap identity (IDevID-like) enrolls the EST identity, which
// enrolls the device certificate and renews it — all keys in the token.
func certSteps(p testenv.TB, run func(string, func() (string, error)) error, b *testenv.Bus, pk *testenv.Polkit, ctx context.Context, kc *kclient.Client, kuid, kgid int) (*testenv.Labcloud, []byte, error) {
	dir := testenv.SharedTempDir(p, "demo-certs")
	// The device maker's CA, which signs bootstrap identities in the factory.
	makerKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	makerTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "demo device maker CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	makerDER, _ := x509.CreateCertificate(rand.Reader, makerTmpl, makerTmpl, &makerKey.PublicKey, makerKey)
	maker, _ := x509.ParseCertificate(makerDER)
	makerFile := filepath.Join(dir, "maker-ca.pem")
	os.WriteFile(makerFile, []byte(certsapi.EncodeChain([]*x509.Certificate{maker})), 0o644)

	var lab *testenv.Labcloud
	var caPEM []byte
	if err := run("start edgev2-labcloud (EST CA, DPS, IoT Hub) at a port-less name on 443, as Azure is reached", func() (string, error) {
		lab = testenv.StartLabcloud(p, fmt.Sprintf(`[est]
bootstrap_ca_files = [%q]
validity = "720h"
[dps]
id_scope = "0ne0000demo"
[[dps.enrollments]]
group_id = "demo-devices"
attestation = "x509"
certificate_file = "$STATE/est/ca-cert.pem"
[[dps.enrollments]]
registration_id = "demo-opcert"
attestation = "symmetric_key"
primary_key = %q
[dps.enrollments.credential_policy]
issuer = "est"
validity = "720h"
key_types = ["ec-p256"]
`, makerFile, opcertEnrollmentKey))
		var err error
		caPEM, err = os.ReadFile(lab.CAFile)
		if err != nil {
			return "", err
		}
		os.WriteFile(filepath.Join(dir, "est-ca.pem"), caPEM, 0o644)
		return lab.URL + ": EST, DPS and IoT Hub", nil
	}); err != nil {
		return nil, nil, err
	}
	var cc *cclient.Client
	if err := run("start edgev2-certd as edgecerts", func() (string, error) {
		cuid, cgid := testenv.EnsureUser(p, testenv.CertsUser)
		home := filepath.Join(dir, "certd")
		os.Mkdir(home, 0o700)
		os.Chown(home, cuid, cgid)
		cfg := filepath.Join(dir, "certd.toml")
		serviceConfigs["certd.toml"] = cfg
		text := fmt.Sprintf(`homedir = %q
[preloaded_certs]
est-ca = "file://%s"
[est]
url = "%s/.well-known/est"
trusted_certs = ["est-ca"]
identity_cert = "est-id"
identity_key = "est-id"
bootstrap_identity_cert = "est-bootstrap"
bootstrap_identity_key = "est-bootstrap"
# short for the demo's revocation step; the default is "1h"
crl_check_interval = "2s"
[cert_issuance.device-cert]
method = "est"
key_id = "device-id"
common_name = "demo-device-1"
expiry_days = 7
[cert_issuance.device-cert.auto_renew]
threshold = "80%%"
# modrtd's quickstart edge CA, as the super-config binds it.
[local_ca.edgev2-edge-ca]
key = "edgev2-edge-ca"
`, home, filepath.Join(dir, "est-ca.pem"), lab.URL)
		if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
			return "", err
		}
		os.Chown(cfg, cuid, cgid)
		// certd's grant in Keys, compiled from its config as `edgectl
		// config apply` writes it: the keys it issues and signs with.
		rules, err := superconfig.ServiceRulesFor(superconfig.ServiceConfigs{Certd: []byte(text)})
		if err != nil {
			return "", err
		}
		pk.AddRule(p, "certd-grant", string(rules))
		testenv.StartService(p, b, testenv.ServiceOptions{
			Binary: testenv.BuildBinary(p, "./cmd/edgev2-certd"), Args: []string{"--config", cfg},
			User: testenv.CertsUser, BusName: certsapi.BusName,
		})
		cc = cclient.New(b.Conn(p))
		return "owns " + certsapi.BusName, nil
	}); err != nil {
		return nil, nil, err
	}
	if err := run("factory: bootstrap key in the token, certificate from the maker CA", func() (string, error) {
		key, err := kc.CreateKeyPair(ctx, "est-bootstrap", "ec-p256")
		if err != nil {
			return "", err
		}
		signer, err := key.Signer(ctx)
		if err != nil {
			return "", err
		}
		csrDER, err := certs.NewCSR(signer, pkix.Name{CommonName: "demo-serial-0001"}, nil)
		if err != nil {
			return "", err
		}
		csr, _ := certs.ParseCSR(csrDER)
		chain, err := certs.IssueFromCA(csr, []*x509.Certificate{maker}, makerKey, certs.Profile{Validity: 12 * time.Hour, PathLen: -1}, time.Now())
		if err != nil {
			return "", err
		}
		if err := cc.Import(ctx, "est-bootstrap", certsapi.EncodeChain(chain[:1])); err != nil {
			return "", err
		}
		return "CN=demo-serial-0001 issued by demo device maker CA", nil
	}); err != nil {
		return nil, nil, err
	}
	var devPEM string
	if err := run("EST: bootstrap → enrolled identity → device certificate", func() (string, error) {
		var err error
		if devPEM, err = cc.Ensure(ctx, "device-cert"); err != nil {
			return "", err
		}
		if _, err := cc.Get(ctx, "est-id"); err != nil {
			return "", fmt.Errorf("the EST identity was not enrolled: %w", err)
		}
		props, err := cc.Properties(ctx, "device-cert")
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%s, issued by %s, renews at %s", props.Subject, props.Issuer, props.RenewAt.UTC().Format(time.RFC3339)), nil
	}); err != nil {
		return nil, nil, err
	}
	if err := run("openssl verifies the device chain against the EST CA", func() (string, error) {
		return opensslVerify(p, devPEM, caPEM)
	}); err != nil {
		return nil, nil, err
	}
	return lab, caPEM, run("renew over EST (simplereenroll, mTLS with the certificate itself)", func() (string, error) {
		before, _ := cc.Properties(ctx, "device-cert")
		if err := cc.Renew(ctx, "device-cert"); err != nil {
			return "", err
		}
		after, err := cc.Properties(ctx, "device-cert")
		if err != nil || after.Serial == before.Serial {
			return "", fmt.Errorf("the certificate did not change (%v)", err)
		}
		return fmt.Sprintf("serial %s… → %s…", before.Serial[:8], after.Serial[:8]), nil
	})
}

// revocationStep revokes the device certificate at the CA with
// `edgev2-labcloud revoke`: certd notices on its CRL schedule, re-enrolls
// with a new key, and identityd registers the new certificate with DPS.
func revocationStep(p testenv.TB, run func(string, func() (string, error)) error, b *testenv.Bus, ctx context.Context, lab *testenv.Labcloud, identityd *testenv.Service) error {
	cc := cclient.New(b.Conn(p))
	return run("revoke the device certificate at the CA (edgev2-labcloud revoke): certd re-enrolls, identityd re-registers", func() (string, error) {
		before, err := cc.Properties(ctx, "device-cert")
		if err != nil {
			return "", err
		}
		registered := strings.Count(identityd.Output(), "registering again with DPS")
		out, err := exec.Command(testenv.BuildBinary(p, "./cmd/edgev2-labcloud"), "revoke", "--state", lab.State, before.Serial).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("edgev2-labcloud revoke: %v: %s", err, out)
		}
		for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
			after, err := cc.Properties(ctx, "device-cert")
			if err == nil && after.Serial != before.Serial && strings.Count(identityd.Output(), "registering again with DPS") > registered &&
				strings.Contains(identityd.Output()[strings.LastIndex(identityd.Output(), "registering again with DPS"):], "provisioned") {
				return fmt.Sprintf("serial %s… revoked → %s…, registered with DPS again", before.Serial[:8], after.Serial[:8]), nil
			}
		}
		return "", fmt.Errorf("certd did not re-enroll the revoked certificate, or identityd did not register it, within 90 s")
	})
}

func opensslVerify(p testenv.TB, chainPEM string, caPEM []byte) (string, error) {
	dir := p.TempDir()
	chain, err := certsapi.ParseChainPEM(chainPEM)
	if err != nil {
		return "", err
	}
	os.WriteFile(filepath.Join(dir, "ca.pem"), caPEM, 0o600)
	os.WriteFile(filepath.Join(dir, "leaf.pem"), []byte(certsapi.EncodeChain(chain[:1])), 0o600)
	out, err := exec.Command("openssl", "verify", "-CAfile", filepath.Join(dir, "ca.pem"), filepath.Join(dir, "leaf.pem")).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("openssl verify: %v: %s", err, out)
	}
	return strings.TrimSpace(strings.TrimPrefix(string(out), dir+"/")), nil
}
