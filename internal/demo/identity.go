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
		var err error
		identityd, ic, err = startIdentityd(p, b, pk, ctx, "demo-identity", "identityd-grant", lab.URL, `method = "x509"
identity_cert = "device-cert"
identity_pk = "device-id"
`)
		if err != nil {
			return "", err
		}
		demoIdentityd = identityd
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
		if err := postModuleMessage("https://"+hostPort, caPEM, dev.DeviceID, "demo-module", tok, `{"temperature": 21.5}`); err != nil {
			return "", err
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

// startIdentityd starts edgev2-identityd with a fresh home in the shared
// temporary directory dirName, provisioning with the lab's DPS at
// dpsURL with attestation (the [provisioning.attestation] settings), grants
// it (polkit rule rule) what that configuration names, and waits until it
// has provisioned the device.
func startIdentityd(p testenv.TB, b *testenv.Bus, pk *testenv.Polkit, ctx context.Context, dirName, rule, dpsURL, attestation string) (*testenv.Service, *iclient.Client, error) {
	iuid, igid := testenv.EnsureUser(p, testenv.IdentityUser)
	dir := testenv.SharedTempDir(p, dirName)
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
%s[cloud]
trusted_certs = ["est-ca"]
`, home, dpsURL, attestation)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		return nil, nil, err
	}
	os.Chown(cfg, iuid, igid)
	rules, err := superconfig.ServiceRulesFor(superconfig.ServiceConfigs{Identityd: []byte(text)})
	if err != nil {
		return nil, nil, err
	}
	pk.AddRule(p, rule, string(rules))
	svc := testenv.StartService(p, b, testenv.ServiceOptions{
		Binary: testenv.BuildBinary(p, "./cmd/edgev2-identityd"), Args: []string{"--config", cfg},
		User: testenv.IdentityUser, BusName: idapi.BusName,
	})
	ic := iclient.New(b.Conn(p))
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		st, err := ic.State(ctx)
		if err == nil && st == "provisioned" {
			return svc, ic, nil
		}
		if time.Now().After(deadline) {
			info, _ := ic.ProvisioningInfo(ctx)
			return nil, nil, fmt.Errorf("not provisioned (state %q): %s", st, info.LastError)
		}
	}
}

// postModuleMessage sends a device-to-cloud message of module to the hub
// at hubURL (whose TLS certificate caPEM issued) with the module's SAS
// token; the hub must accept it (204).
func postModuleMessage(hubURL string, caPEM []byte, deviceID, module, token, body string) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	url := fmt.Sprintf("%s/devices/%s/modules/%s/messages/events?api-version=2020-03-13", hubURL, deviceID, module)
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("the hub answered %s to module %s's token", resp.Status, module)
	}
	return nil
}
