package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"os"
	"time"

	idapi "github.com/edgev2/edgev2/identity/api"
	iclient "github.com/edgev2/edgev2/identity/client"
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
		var err error
		_, ic, err = startIdentityd(p, b, pk, ctx, "demo-opcert", "identityd-opcert-grant", lab.URL, `method = "symmetric_key"
registration_id = "demo-opcert"
symmetric_key = "opcert-sas"
operational_cert = { cert_id = "device-operational", key_type = "ec-p256", renew_threshold = "80%" }
`)
		if err != nil {
			return "", err
		}
		op, err := operationalCert(ctx, ic)
		if err != nil {
			return "", err
		}
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
		if err := postModuleMessage(lab.URL, caPEM, dev.DeviceID, "opcert-module", tok, `{"temperature": 22}`); err != nil {
			return "", err
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
		op, err := operationalCert(ctx, ic)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%s; %s, renews at %s", detail, op.State, time.Unix(int64(op.RenewAt), 0).UTC().Format(time.RFC3339)), nil
	})
}

// operationalCert is the operational certificate part of identityd's
// provisioning info (zero when it reports none).
func operationalCert(ctx context.Context, ic *iclient.Client) (idapi.OperationalCert, error) {
	info, err := ic.ProvisioningInfo(ctx)
	if err != nil || info.Operational == nil {
		return idapi.OperationalCert{}, err
	}
	return *info.Operational, nil
}
