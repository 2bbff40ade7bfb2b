package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
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
)

// identitySteps: DPS X.509 registration with the EST-issued device
// certificate, a module identity in the hub, and a module SAS token the hub
// accepts.
func identitySteps(p testenv.TB, run func(string, func() (string, error)) error, b *testenv.Bus, pk *testenv.Polkit, ctx context.Context, lab *testenv.Labcloud, caPEM []byte) error {
	hostPort := strings.TrimPrefix(lab.URL, "https://")
	var ic *iclient.Client
	var identityd *testenv.Service
	if err := run("start edgev2-identityd: DPS X.509 with the EST-issued certificate", func() (string, error) {
		iuid, igid := testenv.EnsureUser(p, testenv.IdentityUser)
		dir := testenv.SharedTempDir(p, "demo-identity")
		home := filepath.Join(dir, "identityd")
		os.Mkdir(home, 0o700)
		os.Chown(home, iuid, igid)
		cfg := filepath.Join(dir, "identityd.toml")
		serviceConfigs["identityd.toml"] = cfg
		text := fmt.Sprintf(`hostname = "demo-gateway"
homedir = %q
[provisioning]
source = "dps"
global_endpoint = %q
id_scope = "0ne0000demo"
[provisioning.attestation]
method = "x509"
identity_cert = "device-cert"
identity_pk = "device-id"
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
		pk.AddRule(p, "identityd-grant", string(rules))
		identityd = testenv.StartService(p, b, testenv.ServiceOptions{
			Binary: testenv.BuildBinary(p, "./cmd/edgev2-identityd"), Args: []string{"--config", cfg},
			User: testenv.IdentityUser, BusName: idapi.BusName,
		})
		demoIdentityd = identityd
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
		dev, err := ic.DeviceIdentity(ctx)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("assigned to hub %s as device %s", dev.HubHostname, dev.DeviceID), nil
	}); err != nil {
		return err
	}
	if err := run("create a module identity in the hub (keys derived in Keys)", func() (string, error) {
		m, err := ic.CreateModule(ctx, "demo-module", "edgeAgent")
		if err != nil {
			return "", err
		}
		return "demo-module, generation " + m.GenerationID, nil
	}); err != nil {
		return err
	}
	tokenAccepted := func() (string, error) {
		tok, err := ic.SasToken(ctx, "demo-module", 300)
		if err != nil {
			return "", err
		}
		dev, _ := ic.DeviceIdentity(ctx)
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
		url := fmt.Sprintf("https://%s/devices/%s/modules/demo-module/messages/events?api-version=2020-03-13", hostPort, dev.DeviceID)
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"temperature": 21.5}`))
		req.Header.Set("Authorization", tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			return "", err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			return "", fmt.Errorf("the hub answered %s", resp.Status)
		}
		return "HTTP 204 from the hub for " + tok[:strings.Index(tok, "&sig=")] + "&sig=…", nil
	}
	if err := run("the module's SAS token is accepted by the hub (device-to-cloud message)", tokenAccepted); err != nil {
		return err
	}
	if err := revocationStep(p, run, b, ctx, lab, identityd); err != nil {
		return err
	}
	return run("after the re-enrollment, a module's SAS token is still accepted", tokenAccepted)
}
