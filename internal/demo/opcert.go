package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	idapi "github.com/edgev2/edgev2/identity/api"
	iclient "github.com/edgev2/edgev2/identity/client"
	"github.com/edgev2/edgev2/internal/superconfig"
	"github.com/edgev2/edgev2/internal/testenv"
	kclient "github.com/edgev2/edgev2/keys/client"
)

// demoIdentityd is the identityd identitySteps started; the operational
// certificate variant replaces it.
var demoIdentityd *testenv.Service

// opcertKey is the demo-opcert enrollment's symmetric key.
var opcertKey = sha256.Sum256([]byte("demo operational certificate enrollment key"))

var opcertEnrollmentKey = base64.StdEncoding.EncodeToString(opcertKey[:])

// operationalCertSteps: the variant where DPS issues the device's hub
// certificate (ADR certificate management): identityd onboards with a
// symmetric key, sends a CSR for a key made in the SoftHSM token, stores
// the issued chain and uses it with the hub from then on.
func operationalCertSteps(p testenv.TB, run func(string, func() (string, error)) error, b *testenv.Bus, pk *testenv.Polkit, ctx context.Context, kc *kclient.Client, lab *testenv.Labcloud) error {
	var ic *iclient.Client
	if err := run("variant: identityd onboards with a symmetric key; DPS issues the operational certificate", func() (string, error) {
		if _, err := kc.CreateKey(ctx, "opcert-sas", "sign", opcertKey[:]); err != nil {
			return "", err
		}
		if demoIdentityd != nil {
			demoIdentityd.Stop(p)
		}
		iuid, igid := testenv.EnsureUser(p, testenv.IdentityUser)
		dir := testenv.SharedTempDir(p, "demo-opcert")
		home := filepath.Join(dir, "identityd")
		os.Mkdir(home, 0o700)
		os.Chown(home, iuid, igid)
		cfg := filepath.Join(dir, "identityd.toml")
		text := fmt.Sprintf(`hostname = "demo-gateway"
homedir = %q
[provisioning]
source = "dps"
global_endpoint = %q
id_scope = "0ne0000demo"
[provisioning.attestation]
method = "symmetric_key"
registration_id = "demo-opcert"
symmetric_key = "opcert-sas"
operational_cert = { cert_id = "device-operational", key_type = "ec-p256", renew_threshold = "80%%" }
[cloud]
trusted_certs = ["est-ca"]
`, home, lab.URL)
		if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
			return "", err
		}
		os.Chown(cfg, iuid, igid)
		rules, err := superconfig.ServiceRulesFor(superconfig.ServiceConfigs{Identityd: []byte(text)})
		if err != nil {
			return "", err
		}
		pk.AddRule(p, "identityd-opcert-grant", string(rules))
		testenv.StartService(p, b, testenv.ServiceOptions{
			Binary: testenv.BuildBinary(p, "./cmd/edgev2-identityd"), Args: []string{"--config", cfg},
			User: testenv.IdentityUser, BusName: idapi.BusName,
		})
		serviceConfigs["identityd.toml"] = cfg
		ic = iclient.New(b.Conn(p))
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			st, err := ic.State(ctx)
			if err == nil && st == "provisioned" {
				break
			}
			if time.Now().After(deadline) {
				info, _ := ic.ProvisioningInfo(ctx)
				return "", fmt.Errorf("not provisioned (state %q): %s", st, info.LastError)
			}
		}
		info, err := ic.ProvisioningInfo(ctx)
		if err != nil {
			return "", err
		}
		op := operationalOf(info)
		props, err := kc.Key(op.KeyID).Properties(ctx)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("certificate %s (serial %s) for key %s, made in the token (%s…)", op.CertID,
			op.Serial, op.KeyID, props.Location[:min(len(props.Location), 40)]), nil
	}); err != nil {
		return err
	}
	if err := run("the hub knows the device by that certificate; a module's SAS token is accepted", func() (string, error) {
		dev, err := ic.DeviceIdentity(ctx)
		if err != nil {
			return "", err
		}
		if dev.AuthType != "x509" {
			return "", fmt.Errorf("device auth_type %q, want x509", dev.AuthType)
		}
		if _, err := ic.CreateModule(ctx, "opcert-module", "edgeAgent"); err != nil { // over the operational certificate
			return "", err
		}
		tok, err := ic.SasToken(ctx, "opcert-module", 300)
		if err != nil {
			return "", err
		}
		caPEM, err := os.ReadFile(lab.CAFile)
		if err != nil {
			return "", err
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
		url := fmt.Sprintf("%s/devices/%s/modules/opcert-module/messages/events?api-version=2020-03-13", lab.URL, dev.DeviceID)
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"temperature": 22}`))
		req.Header.Set("Authorization", tok)
		resp, err := c.Do(req)
		if err != nil {
			return "", err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			return "", fmt.Errorf("the hub answered %s to the module's token", resp.Status)
		}
		return "module opcert-module registered over the certificate; HTTP 204 for its token", nil
	}); err != nil {
		return err
	}
	return run("edgectl check: the operational certificate and its renewal", func() (string, error) {
		detail, err := checkDevice(p, b)
		if err != nil {
			return "", err
		}
		info, err := ic.ProvisioningInfo(ctx)
		if err != nil {
			return "", err
		}
		op := operationalOf(info)
		return fmt.Sprintf("%s; %s, renews at %s", detail, op.State, time.Unix(int64(op.RenewAt), 0).UTC().Format(time.RFC3339)), nil
	})
}

// operationalOf is the operational certificate's part of info (zero when
// identityd reports none).
func operationalOf(info idapi.ProvisioningInfo) idapi.OperationalCert {
	if info.Operational == nil {
		return idapi.OperationalCert{}
	}
	return *info.Operational
}
