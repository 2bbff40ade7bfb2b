package tpm_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	certsapi "github.com/edgev2/edgev2/certs/api"
	"github.com/edgev2/edgev2/certs/est"
	iclient "github.com/edgev2/edgev2/identity/client"
	"github.com/edgev2/edgev2/internal/labcloud"
	"github.com/edgev2/edgev2/internal/labcloud/dps"
	labest "github.com/edgev2/edgev2/internal/labcloud/est"
	"github.com/edgev2/edgev2/internal/labcloud/labhost"
	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/internal/tpm"
)

// TestTPM2CloudZeroTouchFlow is the tpm2cloud blueprint end to end: the
// TPM's EK certificate is verified against its maker's CA; the factory
// creates the IDevID and certifies its TPM-signed CSR; the device enrolls
// its LDevID over EST with mutual TLS by the IDevID; the LDevID is linked
// into tpm2-pkcs11; keyd (on the TPM token) and certd get the operational
// certificate over EST with the LDevID as TLS identity and renew it; and
// identityd registers with DPS by X.509 with that certificate.
func TestTPM2CloudZeroTouchFlow(t *testing.T) {
	testenv.RequireRoot(t)
	kuid, kgid := testenv.EnsureUser(t, testenv.ServiceUser)
	ctx := tpm.CtxT(t)
	dir := testenv.SharedTempDir(t, "tpm2cloud")
	sw := testenv.StartSwtpm(t)

	// Supply chain: the TPM is genuine.
	if out := tpm.MustTPM(t, sw, "ek", "verify", "--ca", sw.MakerCAFile); !strings.Contains(out, "verified") {
		t.Fatalf("ek verify: %s", out)
	}

	// Platform manufacturing: IDevID in the endorsement hierarchy, its
	// certificate from the factory CA, stored in NV.
	factory := tpm.NewFactoryCA(t, "Device Maker IDevID CA")
	tpm.MustTPM(t, sw, "idevid", "create")
	csr := tpm.MustTPM(t, sw, "idevid", "csr", "--cn", "device-42", "--serial", "SN-0042")
	tpm.MustTPM(t, sw, "idevid", "set-cert", factory.Certify(t, csr))
	blobs := filepath.Join(dir, "tpm")
	tpm.MustTPM(t, sw, "ldevid", "create", "--blobs", blobs)

	// The cloud: EST CA trusting the factory CA for bootstrap, DPS with an
	// X.509 group enrollment under the EST CA.
	cloudState := filepath.Join(dir, "cloud")
	if _, err := labest.NewServer(labest.Config{}, filepath.Join(cloudState, "est"), nil); err != nil {
		t.Fatal(err)
	}
	cloudCfg := labcloud.Config{
		EST: labest.Config{BootstrapCAFiles: []string{factory.File()}},
		DPS: dps.Config{IDScope: "0ne00000042", Enrollments: []dps.Enrollment{
			{GroupID: "grp-x509", Attestation: "x509", CertificateFile: filepath.Join(cloudState, "est", "ca-cert.pem")},
		}},
	}
	// Reached as Azure is: a bare name on 443 (its own loopback address).
	host, l := labhost.Listen(t)
	hostPort := host.Name
	cloud, err := labcloud.Open(cloudCfg, cloudState, hostPort, nil)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := cloud.TLSConfig(cloud.ServerNames()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cloud.StartTLS(l, tlsCfg).Close)
	caFile := filepath.Join(dir, "labcloud-ca.pem")
	os.WriteFile(caFile, cloud.EST.CAPEM(), 0o644)
	estURL := "https://" + hostPort + "/.well-known/est"

	// Onboarding: LDevID over EST, mutual TLS by the IDevID in the TPM.
	ldevidFile := filepath.Join(dir, "ldevid.pem")
	tpm.MustTPM(t, sw, "ldevid", "enroll", "--est", estURL, "--est-ca", caFile, "--cn", "device-42", "--out", ldevidFile)
	ldevidPEM, _ := os.ReadFile(ldevidFile)
	opensslVerify(t, ldevidFile, caFile)
	ldevid := parsePEMCert(t, ldevidPEM)
	tp := tpm.OpenTPM(t, sw, tpm.Config{})
	ld, err := tp.LDevID(ctx)
	tp.Close()
	if err != nil || !tpm.SamePublic(ld.Public, ldevid.PublicKey) {
		t.Fatalf("the EST certificate is not for the LDevID at 0x81000002: %v", err)
	}
	if n := len(cloud.EST.Issued()); n != 1 {
		t.Fatalf("EST issued %d certificates, want 1 (the LDevID)", n)
	}
	t.Run("ESTRefusesTheLDevIDCSRWithoutTheIDevID", func(t *testing.T) {
		// The EST CA has no Basic users: the enrollment above was
		// authorised by the IDevID's TLS client certificate alone.
		tp := tpm.OpenTPM(t, sw, tpm.Config{})
		defer tp.Close()
		s, err := tp.Signer(ctx, tpm.LDevIDHandle)
		if err != nil {
			t.Fatal(err)
		}
		csr, err := tpm.CreateCSR(s, tpm.CSRSubject{CommonName: "device-42"})
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(cloud.EST.CAPEM())
		c, _ := est.New(est.Config{URL: estURL, TrustAnchors: pool})
		if _, err := c.SimpleEnroll(ctx, est.Auth{}, csr); err == nil {
			t.Fatal("EST enrolled the LDevID without any client authentication")
		}
	})

	// The LDevID into tpm2-pkcs11 (the store's primary is the SRK).
	tok := testenv.NewTPM2PKCS11Token(t, sw, "edgev2", kuid, kgid, testenv.TPM2PKCS11Options{PrimaryHandle: "0x81000001"})
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", tok.Broker.BusAddress)
	pinFile := filepath.Join(t.TempDir(), "pin")
	os.WriteFile(pinFile, []byte(tok.PIN+"\n"), 0o600)
	linkArgs := []string{"ldevid", "link", "--store", tok.Store, "--token", tok.Label, "--pin-file", pinFile, "--blobs", blobs, "--tcti", tok.TCTI}
	if out := tpm.MustTPM(t, sw, linkArgs...); !strings.Contains(out, "ldevid linked") {
		t.Fatalf("link: %s", out)
	}
	if out := tpm.MustTPM(t, sw, linkArgs...); !strings.Contains(out, "already linked") {
		t.Fatalf("second link was not idempotent: %s", out)
	}
	// tpm2-pkcs11 cannot generate HMAC keys through PKCS#11
	// (CKR_FUNCTION_NOT_SUPPORTED), so identityd's module master key is
	// made in the TPM by tpm2_ptool and preloaded.
	tok.Ptool(t, "addkey", "--algorithm", "hmac:sha256", "--label", tok.Label, "--userpin", tok.PIN, "--key-label", "identityd-master", "--path", tok.Store)
	masterID := ptoolObjectID(t, tok.Ptool(t, "listobjects", "--label", tok.Label, "--path", tok.Store), "identityd-master")
	tok.Ptool(t, "objmod", "--id", masterID, "--key", "CKA_DERIVE", "--value", "true", "--type", "bool", "--path", tok.Store)
	chownAll(t, filepath.Dir(tok.Store), kuid, kgid)

	// The device's services: keyd on the TPM token, certd with the LDevID
	// as its EST identity, identityd registering by X.509.
	d := testenv.StartDevice(t, testenv.DeviceOptions{
		Cloud: &testenv.Cloud{Host: hostPort, CAPEM: cloud.EST.CAPEM()},
		Keyd: &testenv.Daemon{Args: []string{}, Env: tok.Env(), Config: fmt.Sprintf("pkcs11_lib_path = %q\npkcs11_base_slot = %q\n[preloaded_keys]\nldevid = %q\nidentityd-master = %q\n",
			tok.LibPath, tok.URI(), "pkcs11:token="+tok.Label+";object=ldevid?pin-value="+tok.PIN,
			"pkcs11:token="+tok.Label+";object=identityd-master?pin-value="+tok.PIN)},
		Certd: &testenv.Daemon{Config: fmt.Sprintf(`
[preloaded_certs]
labcloud-ca = "file://$CLOUD_CA"
[est]
url = %q
trusted_certs = ["labcloud-ca"]
identity_cert = "ldevid"
identity_key = "ldevid"
[cert_issuance.device-op]
method = "est"
common_name = "device-42"
expiry = "1h"
[cert_issuance.ldevid]
method = "est"
common_name = "device-42"
key_algorithms = "ec-p256"
`, estURL)},
	})
	keyd, certd := d.Daemon(testenv.Keyd), d.Daemon(testenv.Certd)
	kc, cc, ic := d.Keys(), d.Certs(), d.Identity()
	if err := cc.Import(ctx, "ldevid", string(ldevidPEM)); err != nil {
		t.Fatalf("import the LDevID certificate into certd: %v", err)
	}

	// The operational certificate: first enrollment with the LDevID (in the
	// TPM, through keyd and tpm2-pkcs11) as the TLS identity; its key is
	// generated in the TPM too.
	opPEM, err := cc.Ensure(ctx, "device-op")
	if err != nil {
		t.Fatalf("EnsureCertificate device-op over EST with the LDevID: %v", err)
	}
	op := parsePEMCert(t, []byte(opPEM))
	opKey, err := kc.GetKey(ctx, "device-op")
	if err != nil {
		t.Fatal(err)
	}
	props, err := opKey.Properties(ctx)
	if err != nil || !strings.HasPrefix(props.Location, "pkcs11:token=edgev2") {
		t.Fatalf("the operational key is not on the TPM token: %+v, %v", props, err)
	}
	if n := len(cloud.EST.Issued()); n != 2 {
		t.Fatalf("EST issued %d certificates, want 2 (LDevID, operational)", n)
	}
	// Renewal over EST (simplereenroll, TLS identity in the TPM).
	if err := cc.Renew(ctx, "device-op"); err != nil {
		t.Fatalf("Renew device-op over EST: %v", err)
	}
	renewedPEM, _ := cc.Get(ctx, "device-op")
	renewed := parsePEMCert(t, []byte(renewedPEM))
	if renewed.Equal(op) || renewed.Subject.CommonName != "device-42" {
		t.Fatalf("renewal gave no new certificate for device-42")
	}
	renewedFile := filepath.Join(t.TempDir(), "renewed.pem")
	os.WriteFile(renewedFile, []byte(renewedPEM), 0o644)
	opensslVerify(t, renewedFile, caFile)

	// The LDevID itself renews through certd: simplereenroll authenticated
	// by the LDevID, CSR signed by the same TPM key through keyd.
	if err := cc.Renew(ctx, "ldevid"); err != nil {
		t.Fatalf("Renew the LDevID over EST: %v", err)
	}
	newLDevIDPEM, _ := cc.Get(ctx, "ldevid")
	newLDevID := parsePEMCert(t, []byte(newLDevIDPEM))
	if newLDevID.Equal(ldevid) || !tpm.SamePublic(newLDevID.PublicKey, ld.Public) {
		t.Fatalf("the renewed LDevID certificate is not a new certificate for the TPM's LDevID key")
	}
	if n := len(cloud.EST.Issued()); n != 4 {
		t.Fatalf("EST issued %d certificates, want 4 (LDevID, operational, renewed operational, renewed LDevID)", n)
	}

	// DPS X.509 registration with the operational certificate.
	d.StartDaemon(t, testenv.Identityd, testenv.Daemon{Config: `hostname = "edge-1"
[cloud]
trusted_certs = ["labcloud-ca"]
retry_max_s = 2
timeout_s = 5
[provisioning]
source = "dps"
global_endpoint = "https://$CLOUD_HOST"
id_scope = "0ne00000042"
[provisioning.attestation]
method = "x509"
identity_cert = "device-op"
identity_pk = "device-op"
`})
	waitProvisioned(t, ic, 60*time.Second)
	dev, err := ic.DeviceIdentity(ctx)
	if err != nil || dev.DeviceID != "device-42" || dev.HubHostname != hostPort {
		t.Fatalf("device identity %v, %v; want device-42 on %s", dev, err, hostPort)
	}
	if info, _ := ic.ProvisioningInfo(ctx); info.Substatus != "initialAssignment" {
		t.Fatalf("provisioning info %v", info)
	}
	if _, err := ic.CreateModule(ctx, "telemetry", "edgeAgent"); err != nil {
		t.Fatalf("module identity (master key in the TPM): %v", err)
	}
	if tok, err := ic.SasToken(ctx, "telemetry", 600); err != nil || !strings.HasPrefix(tok, "SharedAccessSignature ") {
		t.Fatalf("module SAS token signed with the TPM's HMAC key: %q, %v", tok, err)
	}
	for _, out := range []string{keyd.Output(), certd.Output()} {
		if strings.Contains(out, tok.PIN) {
			t.Fatal("a service logged the token PIN")
		}
	}
}

func waitProvisioned(t *testing.T, ic *iclient.Client, timeout time.Duration) {
	t.Helper()
	var got string
	if testenv.WaitFor(timeout, func() bool { got, _ = ic.State(context.Background()); return got == "provisioned" }) {
		return
	}
	info, _ := ic.ProvisioningInfo(context.Background())
	t.Fatalf("identityd state %q after %v (last error %q)", got, timeout, info.LastError)
}

func parsePEMCert(t *testing.T, pemData []byte) *x509.Certificate {
	t.Helper()
	chain, err := certsapi.ParseChainPEM(string(pemData))
	if err != nil || len(chain) == 0 {
		t.Fatalf("parse certificate: %v", err)
	}
	return chain[0]
}

func opensslVerify(t *testing.T, certFile, caFile string) {
	t.Helper()
	out, err := exec.Command("openssl", "verify", "-CAfile", caFile, certFile).CombinedOutput()
	if err != nil || !strings.Contains(string(out), ": OK") {
		t.Fatalf("openssl verify %s: %v\n%s", certFile, err, out)
	}
}

func chownAll(t *testing.T, dir string, uid, gid int) {
	t.Helper()
	filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err == nil {
			os.Lchown(p, uid, gid)
		}
		return nil
	})
}

// ptoolObjectID finds the store's object id of the key labelled label in
// tpm2_ptool listobjects output (YAML list items with CKA_LABEL and id).
func ptoolObjectID(t *testing.T, listing, label string) string {
	t.Helper()
	for _, item := range strings.Split(listing, "\n- ") {
		if !strings.Contains(item, "CKA_LABEL: "+label+"\n") {
			continue
		}
		for _, line := range strings.Split(item, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "id: "); ok {
				return v
			}
		}
	}
	t.Fatalf("no object %q in:\n%s", label, listing)
	return ""
}
