package e2e_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"encoding/base64"

	certsapi "github.com/edgev2/edgev2/certs/api"
	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/identity/api"
	"github.com/edgev2/edgev2/internal/labcloud/dps"
	"github.com/edgev2/edgev2/internal/labcloud/hub"
	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/internal/testpki"
	"github.com/edgev2/edgev2/internal/tpm"
)

func operationalProvisioning(w *world) string {
	return fmt.Sprintf(`[provisioning]
source = "dps"
global_endpoint = "https://%s"
id_scope = "0ne00000042"
[provisioning.attestation]
method = "symmetric_key"
registration_id = "reg-op"
symmetric_key = "dps-key"
operational_cert = { cert_id = "device-op", key_type = "ec-p256", renew_threshold = "55%%" }
`, w.hubHost)
}

// opInfo reads the operational fields of GetProvisioningInfo.
func opInfo(t *testing.T, w *world) (serial, keyID, state, failure string, renewals uint32) {
	t.Helper()
	info, err := w.id.ProvisioningInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var op api.OperationalCert
	if info.Operational != nil {
		op = *info.Operational
	}
	return op.Serial, op.KeyID, op.State, op.Failure, op.Renewals
}

// waitOp waits until cond holds for the operational fields.
func waitOp(t *testing.T, w *world, timeout time.Duration, what string, cond func(serial, keyID, state, failure string, renewals uint32) bool) {
	t.Helper()
	var s, k, st, f string
	var r uint32
	if !testenv.WaitFor(timeout, func() bool { s, k, st, f, r = opInfo(t, w); return cond(s, k, st, f, r) }) {
		t.Fatalf("operational certificate: waited %v for %s; have serial %s key %s state %s failure %q renewals %d", timeout, what, s, k, st, f, r)
	}
}

// sendWithOperationalCert posts a device-to-cloud message authenticated by
// the stored operational certificate and its key in Keys, as a device SDK
// using X.509 would.
func sendWithOperationalCert(t *testing.T, w *world, keyID string) int {
	return sendWithOperationalCertAs(t, w, "reg-op", keyID)
}

func sendWithOperationalCertAs(t *testing.T, w *world, deviceID, keyID string) int {
	t.Helper()
	ctx := context.Background()
	pemText, err := w.certs.Get(ctx, "device-op")
	if err != nil {
		t.Fatal(err)
	}
	chain, err := certsapi.ParseChainPEM(pemText)
	if err != nil {
		t.Fatal(err)
	}
	k, err := w.keys.GetKey(ctx, keyID)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := k.Signer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Certificate{PrivateKey: signer, Leaf: chain[0]}
	for _, c := range chain {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(w.caPEM)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tc, nil }}}}
	defer c.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodPost, "https://"+w.hubHost+"/devices/"+deviceID+"/messages/events?api-version=2020-03-13", strings.NewReader(`{"op":1}`))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("send with the operational certificate: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestOperationalCertIssuedByDPSRenewedAndRestartSafe: symmetric-key
// onboarding with a CSR for a key made in SoftHSM; the hub takes the issued
// certificate and no longer the onboarding key; modules' tokens still work;
// renewal by re-registration at the threshold with a new key; DPS down keeps
// the current certificate; a restart that lost the cache write of a finished
// renewal still finds the right key.
func TestOperationalCertIssuedByDPSRenewedAndRestartSafe(t *testing.T) {
	w := newWorldKeyd(t, keydSoftHSM)
	ctx := context.Background()
	importKey(t, w, "dps-key", "sign", dpsKey)
	w.startIdentityd(t, "op", operationalProvisioning(w))
	w.waitState(t, "provisioned", 60*time.Second)

	serial1, key1, state, _, _ := opInfo(t, w)
	if serial1 == "" || key1 != "device-op-key-1" || state != "valid" {
		t.Fatalf("after provisioning: serial %q key %q state %q", serial1, key1, state)
	}
	dev, err := w.id.DeviceIdentity(ctx)
	if err != nil || dev.AuthType != "x509" || dev.CertID != "device-op" || dev.KeyID != key1 {
		t.Fatalf("device identity %v, %v: want x509 with the operational certificate", dev, err)
	}
	// The key was made in the token, and identityd never held it.
	if p, err := w.keys.Key(key1).Properties(ctx); err != nil || !strings.HasPrefix(p.Location, "pkcs11:") {
		t.Fatalf("operational key location %+v, %v: want a PKCS#11 token", p, err)
	}
	if _, err := w.certs.Get(ctx, "dps-trust-bundle"); err != nil {
		t.Fatalf("DPS's trust bundle was not stored: %v", err)
	}
	if d, _ := w.cloud.Hub.Device("reg-op"); d.Authentication.Type != hub.AuthCertificateAuthority {
		t.Fatalf("hub device authentication %q, want certificateAuthority", d.Authentication.Type)
	}
	if code := sendWithOperationalCert(t, w, key1); code != http.StatusNoContent {
		t.Fatalf("the hub answered %d to the operational certificate", code)
	}
	// The certificate lives a minute and renews at 55 %: on a loaded machine
	// the check may already see the renewal under way, which is as good.
	if c := edgectlCheck(t, w, "op"); c.Status != "ok" || !strings.Contains(c.Message, "device-op") || !strings.Contains(c.Message, "valid") && !strings.Contains(c.Message, "renewing") {
		t.Fatalf("edgectl check identity.operational-cert: %+v", c)
	}
	// The onboarding key opens DPS, not the hub.
	if code := w.sendAs(t, "reg-op", "", hub.SignSAS(mustKey(t, dpsKey), w.hubHost+"/devices/reg-op", time.Now().Add(time.Hour), "")); code != http.StatusUnauthorized {
		t.Fatalf("the hub answered %d to the onboarding key; want 401", code)
	}
	// Module identities are managed over the operational certificate and
	// their tokens (signed from the master key) are accepted.
	checkTokens(t, w, "reg-op", false)

	// Renewal at the threshold: a new certificate for a new key.
	cache := filepath.Join(w.dir, "identityd-op", "identity.json")
	before, err := os.ReadFile(cache)
	if err != nil {
		t.Fatal(err)
	}
	waitOp(t, w, 90*time.Second, "the first renewal", func(s, k, st, _ string, r uint32) bool { return r >= 1 && st == "valid" })
	serial2, key2, _, _, _ := opInfo(t, w)
	if serial2 == serial1 || key2 != "device-op-key-2" {
		t.Fatalf("renewal: serial %s→%s, key %s→%s; want a new certificate for the other key", serial1, serial2, key1, key2)
	}
	if _, err := w.keys.GetKey(ctx, key1); !fault.Is(err, fault.NotFound) {
		t.Fatalf("the previous key is still there after the new certificate was stored: %v", err)
	}
	if code := sendWithOperationalCert(t, w, key2); code != http.StatusNoContent {
		t.Fatalf("the hub answered %d to the renewed certificate", code)
	}

	// A kill -9 between storing the renewed certificate and writing the
	// cache: the cache names the old key; identityd finds the live one.
	w.identityd.Kill9(t)
	if err := os.WriteFile(cache, before, 0o600); err != nil {
		t.Fatal(err)
	}
	w.identityd.Restart(t)
	w.waitState(t, "provisioned", 30*time.Second)
	if _, err := w.id.CreateModule(ctx, "after-restart", "edgeAgent"); err != nil {
		t.Fatalf("hub call after a restart that lost the cache write: %v", err)
	}
	if _, k, _, _, _ := opInfo(t, w); k == key1 {
		t.Fatalf("identityd still names the deleted key %s", k)
	}

	// DPS down: the renewal fails, is named, and the certificate stays.
	waitOp(t, w, 90*time.Second, "a renewal after the restart", func(s, k, st, _ string, r uint32) bool { return s != serial2 && st == "valid" })
	serial3, key3, _, _, _ := opInfo(t, w)
	w.stopCloud()
	waitOp(t, w, 90*time.Second, "a failed renewal", func(s, k, st, f string, _ uint32) bool { return st == "renewal-failed" && f == "dps-unreachable" })
	if s, k, _, _, _ := opInfo(t, w); s != serial3 || k != key3 {
		t.Fatalf("a failed renewal changed the certificate: %s/%s → %s/%s", serial3, key3, s, k)
	}
	if c := edgectlCheck(t, w, "op"); c.Status != "warning" || !strings.Contains(c.Message, "dps-unreachable") || c.Fix == "" {
		t.Fatalf("edgectl check identity.operational-cert: %+v; want a warning naming dps-unreachable with a fix", c)
	}
	pemText, err := w.certs.Get(ctx, "device-op")
	if err != nil {
		t.Fatal(err)
	}
	chain, _ := certsapi.ParseChainPEM(pemText)
	if got := chain[0].SerialNumber.Text(16); got != serial3 {
		t.Fatalf("stored certificate %s, want %s kept", got, serial3)
	}
	if _, err := w.keys.GetKey(ctx, key3); err != nil {
		t.Fatalf("the live key is gone after a failed renewal: %v", err)
	}
	// DPS back: the retry succeeds.
	w.startCloud(t)
	waitOp(t, w, 90*time.Second, "a renewal once DPS is back", func(s, k, st, _ string, _ uint32) bool { return s != serial3 && st == "valid" })
}

func mustKey(t *testing.T, b64 string) []byte {
	t.Helper()
	k, err := hub.DecodeKey(b64)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// keydTPM puts keyd's keys in a TPM through tpm2-pkcs11 (its own swtpm:
// the attestation TPM is reached directly by identityd).
func keydTPM(t *testing.T, uid, gid int) (string, []string) {
	tok := testenv.NewTPM2PKCS11Token(t, testenv.StartSwtpm(t), "edgev2-identity", uid, gid, testenv.TPM2PKCS11Options{})
	return fmt.Sprintf("pkcs11_lib_path = %q\npkcs11_base_slot = %q\n", tok.LibPath, tok.URI()), tok.Env()
}

// TestOperationalCertWithTPMOnboardingAndKeyInTPM: TPM attestation to DPS,
// the operational key made in a TPM through tpm2-pkcs11, the hub accepts
// the issued certificate.
func TestOperationalCertWithTPMOnboardingAndKeyInTPM(t *testing.T) {
	w := newWorldKeyd(t, keydTPM)
	ctx := context.Background()
	sw := testenv.StartSwtpm(t)
	ek := readEK(t, sw)
	regID := tpm.RegistrationID(ek)
	w.stopCloud()
	w.cloudCfg.DPS.Enrollments = append(w.cloudCfg.DPS.Enrollments, dps.Enrollment{RegistrationID: regID, Attestation: dps.AttestationTPM,
		EndorsementKey: base64.StdEncoding.EncodeToString(ek), CredentialPolicy: &dps.CredentialPolicy{Issuer: "est", Validity: "24h"}})
	w.startCloud(t)
	w.startIdentityd(t, "op-tpm", fmt.Sprintf(`[provisioning]
source = "dps"
global_endpoint = "https://%s"
id_scope = "0ne00000042"
[provisioning.attestation]
method = "tpm"
operational_cert = { cert_id = "device-op", key_type = "ec-p256" }
[tpm]
address = %q
`, w.hubHost, sw.Addr))
	w.waitState(t, "provisioned", 120*time.Second)
	_, keyID, state, _, _ := opInfo(t, w)
	if state != "valid" || keyID != "device-op-key-1" {
		t.Fatalf("operational certificate state %q key %q", state, keyID)
	}
	p, err := w.keys.Key(keyID).Properties(ctx)
	if err != nil || !strings.Contains(p.Location, "token=edgev2-identity") {
		t.Fatalf("operational key location %+v, %v: want the tpm2-pkcs11 token", p, err)
	}
	if d, _ := w.cloud.Hub.Device(regID); d.Authentication.Type != hub.AuthCertificateAuthority {
		t.Fatalf("hub device authentication %q, want certificateAuthority", d.Authentication.Type)
	}
	if code := sendWithOperationalCertAs(t, w, regID, keyID); code != http.StatusNoContent {
		t.Fatalf("the hub answered %d to the operational certificate whose key is in the TPM", code)
	}
}

// TestOperationalCertForAnotherKeyIsRefusedAndNothingStored: DPS (or
// whoever answers in its name) returns a certificate from the real issuing
// CA, with the right name, but for a key the attacker holds. identityd
// refuses it by name and stores nothing: no certificate, no trust bundle,
// and the device is not provisioned with it.
func TestOperationalCertForAnotherKeyIsRefusedAndNothingStored(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	importKey(t, w, "dps-key", "sign", dpsKey)
	csr, _ := x509.ParseCertificateRequest(testpki.CSR(t, testpki.NewKey(t), "reg-op"))
	foreign, err := w.cloud.EST.IssueForCSR(csr, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	target, _ := url.Parse("https://" + w.hubHost)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(w.caPEM)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	proxy.ModifyResponse = func(r *http.Response) error {
		body, _ := io.ReadAll(r.Body)
		r.Body.Close()
		var op map[string]any
		if json.Unmarshal(body, &op) == nil {
			if st, ok := op["registrationState"].(map[string]any); ok && st["issuedCertificateChain"] != nil {
				st["issuedCertificateChain"] = []string{base64.StdEncoding.EncodeToString(foreign[0].Raw), base64.StdEncoding.EncodeToString(foreign[1].Raw)}
				body, _ = json.Marshal(op)
			}
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		r.Header.Set("Content-Length", fmt.Sprint(len(body)))
		return nil
	}
	w.startIdentityd(t, "op-foreign", strings.Replace(operationalProvisioning(w), "https://"+w.hubHost, w.front(t, proxy), 1))
	last := w.waitFailed(t, 60*time.Second, "not for the key")
	t.Logf("refused: %s", last)
	for _, id := range []string{"device-op", "dps-trust-bundle"} {
		if _, err := w.certs.Get(ctx, id); !fault.Is(err, fault.NotFound) {
			t.Fatalf("certificate %q after a refused issuance: %v; want NotFound", id, err)
		}
	}
	if st, _ := w.id.State(ctx); st == "provisioned" {
		t.Fatal("provisioned with a certificate for another key")
	}
}

// TestOperationalCertKill9MidRenewalLosesNothing kills identityd while a
// renewal is in flight, several times: each time it comes back provisioned,
// the stored certificate is for a key Keys still has, the hub takes it, and
// renewal carries on.
func TestOperationalCertKill9MidRenewalLosesNothing(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	importKey(t, w, "dps-key", "sign", dpsKey)
	w.startIdentityd(t, "op-kill", operationalProvisioning(w))
	w.waitState(t, "provisioned", 60*time.Second)
	for i := 0; i < 3; i++ {
		waitOp(t, w, 90*time.Second, "a renewal in flight", func(_, _, st, _ string, _ uint32) bool { return st == "renewing" })
		w.identityd.Kill9(t)
		w.identityd.Restart(t)
		w.waitState(t, "provisioned", 30*time.Second)
		// The hub takes the device: the stored certificate and a live key agree.
		if _, err := w.id.CreateModule(ctx, fmt.Sprintf("after-kill-%d", i), "edgeAgent"); err != nil {
			t.Fatalf("kill %d: hub call after the restart: %v", i, err)
		}
		_, keyID, _, _, _ := opInfo(t, w)
		if code := sendWithOperationalCert(t, w, keyID); code != http.StatusNoContent {
			t.Fatalf("kill %d: the hub answered %d to the stored certificate with key %s", i, code, keyID)
		}
	}
	_, _, _, _, before := opInfo(t, w)
	waitOp(t, w, 90*time.Second, "a renewal after the kills", func(_, _, st, _ string, r uint32) bool { return r > before && st == "valid" })
}

type checkLine struct{ Name, Status, Message, Fix string }

// edgectlCheck runs `edgectl check` against identityd's config of that name
// and the test bus, and returns its identity.operational-cert line.
func edgectlCheck(t *testing.T, w *world, name string) checkLine {
	t.Helper()
	dir := t.TempDir()
	data, err := os.ReadFile(filepath.Join(w.dir, "identityd-"+name+".toml"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "identityd.toml"), data, 0o600)
	cmd := exec.Command(testenv.BuildBinary(t, "./cmd/edgectl"), "check", "--config-dir", dir, "--polkit-actions-dir", filepath.Join(testenv.RepoRoot(), "policy"), "--output", "json")
	cmd.Env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+w.bus.Address)
	out, _ := cmd.Output()
	var rep struct{ Checks []checkLine }
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("edgectl check: %v: %s", err, out)
	}
	for _, c := range rep.Checks {
		if c.Name == "identity.operational-cert" {
			return c
		}
	}
	t.Fatalf("edgectl check has no identity.operational-cert: %s", out)
	return checkLine{}
}
