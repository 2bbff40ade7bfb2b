package superconfig

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	idconfig "github.com/edgev2/edgev2/identity/config"

	"github.com/edgev2/edgev2/identity/connstr"
	"github.com/edgev2/edgev2/internal/tpm/ek"
)

func (c *Config) planIdentity(r *ids, p *plan) error {
	pr := c.Provisioning
	out := idconfig.Config{Hostname: c.Hostname, Homedir: identitydHome}
	ip := &out.Provisioning
	ip.Source = pr.Source
	wrongSource := func(key, src string) error {
		return c.bad(key, fmt.Sprintf("only used with source = %q, but source is %q", src, ip.Source), "remove it or change source")
	}
	switch pr.Source {
	case "", "none":
		ip.Source = "none"
		for _, s := range []struct {
			key string
			set bool
		}{{"provisioning.connection_string", pr.ConnectionString != ""}, {"provisioning.iothub_hostname", pr.IoTHubHostname != ""},
			{"provisioning.device_id", pr.DeviceID != ""}, {"provisioning.authentication", pr.Authentication != nil},
			{"provisioning.id_scope", pr.IDScope != ""}, {"provisioning.attestation", pr.Attestation != nil}} {
			if s.set {
				return c.bad(s.key, fmt.Sprintf("set, but provisioning source is %q", ip.Source), `set source = "manual" or "dps", or remove it`)
			}
		}
	case "manual":
		if pr.Attestation != nil {
			return wrongSource("provisioning.attestation", "dps")
		}
		if pr.IDScope != "" || pr.GlobalEndpoint != "" {
			return wrongSource("provisioning.id_scope", "dps")
		}
		if err := c.planManual(r, ip); err != nil {
			return err
		}
	case "dps":
		if pr.Authentication != nil {
			return wrongSource("provisioning.authentication", "manual")
		}
		if pr.ConnectionString != "" || pr.IoTHubHostname != "" || pr.DeviceID != "" {
			return wrongSource("provisioning.iothub_hostname", "manual")
		}
		if err := c.planDPS(r, ip, &out); err != nil {
			return err
		}
	default:
		return c.bad("provisioning.source", fmt.Sprintf("unknown source %q", pr.Source), `use "manual", "dps" or "none"`)
	}
	if a := ip.Attestation; c.TPM != nil && (a == nil || a.Method != "tpm") {
		return c.bad("tpm", "[tpm] is only used by DPS TPM attestation", `remove it, or set [provisioning.attestation] method = "tpm"`)
	}
	cl := c.Cloud
	if cl.TimeoutS < 0 || cl.RetryMaxS < 0 || cl.TokenTTLS < 0 {
		return c.bad("cloud", "negative timeout, retry or TTL", "use positive seconds")
	}
	ic := idconfig.Cloud{TimeoutS: cl.TimeoutS, RetryMaxS: cl.RetryMaxS, TokenTTLS: cl.TokenTTLS, DPSAPIVersion: cl.DPSAPIVersion}
	for i, tc := range cl.TrustedCerts {
		id, err := c.certRef(r, fmt.Sprintf("cloud.trusted_certs[%d]", i), tc, fmt.Sprintf("cloud-trusted-%d", i+1))
		if err != nil {
			return err
		}
		ic.TrustedCerts = append(ic.TrustedCerts, id)
	}
	out.Cloud = ic // written only when set (omitempty)
	p.identityd = out
	return nil
}

func (c *Config) planManual(r *ids, ip *idconfig.Provisioning) error {
	pr := c.Provisioning
	ip.GatewayHostname = pr.GatewayHostname
	if pr.ConnectionString != "" {
		if pr.IoTHubHostname != "" || pr.DeviceID != "" || pr.Authentication != nil {
			return c.bad("provisioning.connection_string", "a connection string carries hub, device and key; iothub_hostname, device_id and [provisioning.authentication] conflict with it",
				"use either connection_string or iothub_hostname + device_id + [provisioning.authentication]")
		}
		cs, err := connstr.Parse(pr.ConnectionString) // its errors never echo the key
		if err != nil {
			return c.bad("provisioning.connection_string", err.Error(), `use "HostName=<hub>;DeviceId=<id>;SharedAccessKey=<base64>"`)
		}
		if len(cs.SharedAccessKey) == 0 {
			return c.bad("provisioning.connection_string", "it has no SharedAccessKey", "use a SAS connection string, or X.509 with iothub_hostname, device_id and [provisioning.authentication]")
		}
		// planCredentials moves it into a credential.
		return nil
	}
	if pr.IoTHubHostname == "" {
		return c.bad("provisioning.iothub_hostname", "manual provisioning needs iothub_hostname and device_id, or connection_string", `set iothub_hostname = "<hub>.azure-devices.net"`)
	}
	if pr.DeviceID == "" {
		return c.bad("provisioning.device_id", "manual provisioning needs iothub_hostname and device_id, or connection_string", "set device_id to the device's id in IoT Hub")
	}
	ip.IoTHubHostname, ip.DeviceID = pr.IoTHubHostname, pr.DeviceID
	a := pr.Authentication
	key := "provisioning.authentication"
	if a == nil {
		return c.bad(key, "missing", `add [provisioning.authentication] with method = "sas" or "x509"`)
	}
	out := &idconfig.Authentication{Method: a.Method}
	switch a.Method {
	case "sas":
		if a.DeviceIDPK == nil {
			return c.bad(key+".device_id_pk", "method sas needs the device's SAS key", `set device_id_pk = { value = "<base64>" } or { uri = "file:///..." }`)
		}
		if a.IdentityCert != "" || a.IdentityPK != "" {
			return c.bad(key+".identity_cert", "only used with method x509", "remove it")
		}
		id, err := c.symmetricKey(r, key+".device_id_pk", a.DeviceIDPK, idDevice, false)
		if err != nil {
			return err
		}
		out.DeviceIDPK = id
	case "x509":
		if a.DeviceIDPK != nil {
			return c.bad(key+".device_id_pk", "only used with method sas", "use identity_cert and identity_pk")
		}
		cert, pk, err := c.x509Identity(r, key, a.IdentityCert, a.IdentityPK)
		if err != nil {
			return err
		}
		out.DeviceIDCert, out.DeviceIDPK = cert, pk
	case "":
		return c.bad(key+".method", "not set", `set method = "sas" or "x509"`)
	default:
		return c.bad(key+".method", fmt.Sprintf("unknown method %q", a.Method), `use "sas" or "x509"`)
	}
	ip.Authentication = out
	return nil
}

// x509Identity resolves identity_cert and identity_pk; the key may be left
// out when the certificate is issued (it is the issuance's key).
func (c *Config) x509Identity(r *ids, key, cert, pk string) (certID, keyID string, err error) {
	if cert == "" {
		return "", "", c.bad(key+".identity_cert", "method x509 needs identity_cert", `set identity_cert = "file:///etc/edgev2/device-id.pem", or the id of a certificate in [cert_issuance.certs]`)
	}
	if certID, err = c.certRef(r, key+".identity_cert", cert, idDevice); err != nil {
		return "", "", err
	}
	if k, ok := r.issued[certID]; ok && pk == "" {
		return certID, k, nil
	}
	if pk == "" {
		return "", "", c.bad(key+".identity_pk", "method x509 needs identity_pk with a certificate that is not issued here", `set identity_pk = "file:///etc/edgev2/device-id.key.pem" or a pkcs11: URI`)
	}
	keyID, err = c.keyRef(r, key+".identity_pk", pk, idDevice)
	return certID, keyID, err
}

func (c *Config) planDPS(r *ids, ip *idconfig.Provisioning, out *idconfig.Config) error {
	pr := c.Provisioning
	ip.GlobalEndpoint, ip.IDScope, ip.Payload = pr.GlobalEndpoint, pr.IDScope, pr.Payload
	if ip.GlobalEndpoint == "" {
		ip.GlobalEndpoint = defaultGlobalEndpoint
	}
	if msg := checkHTTPS(ip.GlobalEndpoint); msg != "" {
		return c.bad("provisioning.global_endpoint", msg, "use "+defaultGlobalEndpoint)
	}
	if pr.IDScope == "" {
		return c.bad("provisioning.id_scope", "source dps needs the DPS instance's ID scope", `copy it from the DPS instance's overview, e.g. id_scope = "0ne00000000"`)
	}
	if pr.Payload != "" && !json.Valid([]byte(pr.Payload)) {
		return c.bad("provisioning.payload", "not valid JSON", `write a JSON object, e.g. payload = '{"modelId": "dtmi:com:example;1"}'`)
	}
	a := pr.Attestation
	key := "provisioning.attestation"
	if a == nil {
		return c.bad(key, "missing", `add [provisioning.attestation] with method = "symmetric_key", "x509" or "tpm"`)
	}
	att := &idconfig.Attestation{Method: a.Method, RegistrationID: a.RegistrationID}
	notFor := func(field string) error {
		return c.bad(key+"."+field, fmt.Sprintf("not used with method %q", a.Method), "remove it")
	}
	switch a.Method {
	case "symmetric_key":
		if a.RegistrationID == "" {
			return c.bad(key+".registration_id", "method symmetric_key needs the enrollment's registration id", "set registration_id")
		}
		if a.IdentityCert != "" || a.IdentityPK != "" {
			return notFor("identity_cert")
		}
		if (a.SymmetricKey == nil) == (a.GroupKey == nil) {
			return c.bad(key+".symmetric_key", "set exactly one of symmetric_key (individual enrollment) and group_key (group enrollment)", `set symmetric_key = { value = "<base64>" }`)
		}
		var err error
		if a.SymmetricKey != nil {
			att.SymmetricKey, err = c.symmetricKey(r, key+".symmetric_key", a.SymmetricKey, idDevice, false)
		} else {
			att.GroupKey, err = c.symmetricKey(r, key+".group_key", a.GroupKey, idGroupKey, true)
		}
		if err != nil {
			return err
		}
	case "x509":
		if a.SymmetricKey != nil || a.GroupKey != nil {
			return notFor("symmetric_key")
		}
		cert, pk, err := c.x509Identity(r, key, a.IdentityCert, a.IdentityPK)
		if err != nil {
			return err
		}
		att.IdentityCert, att.IdentityPK = cert, pk
	case "tpm":
		if a.SymmetricKey != nil || a.GroupKey != nil {
			return notFor("symmetric_key")
		}
		if a.IdentityCert != "" || a.IdentityPK != "" {
			return notFor("identity_cert")
		}
		t := TPM{Device: defaultTPMDevice}
		if c.TPM != nil {
			t = *c.TPM
		}
		switch {
		case t.Device != "" && t.Address != "":
			return c.bad("tpm.address", "set device or address, not both", "keep one")
		case t.Device == "" && t.Address == "":
			t.Device = defaultTPMDevice
		case t.Device != "" && !strings.HasPrefix(t.Device, "/"):
			return c.bad("tpm.device", fmt.Sprintf("%q is not an absolute path", t.Device), `use "/dev/tpmrm0"`)
		case t.Address != "":
			if _, port, ok := strings.Cut(t.Address, ":"); !ok || port == "" {
				return c.bad("tpm.address", fmt.Sprintf("%q is not host:port", t.Address), `use e.g. "127.0.0.1:2321" (swtpm's server port)`)
			}
		}
		if t.AuthKeyHandle != "" {
			v, err := strconv.ParseUint(t.AuthKeyHandle, 0, 32)
			if err != nil || v < 0x81000000 || v > 0x817fffff {
				return c.bad("tpm.auth_key_handle", fmt.Sprintf("%q is not a persistent handle in the owner's range", t.AuthKeyHandle), `use a handle in 0x81000000-0x817fffff, e.g. "0x81000100" (the default)`)
			}
		}
		if _, err := ek.ParseTemplate(t.EKTemplate); err != nil {
			return c.bad("tpm.ek_template", err.Error(), `use "tcg" or "azure-sdk", or leave it out to follow the TPM's EK certificate`)
		}
		out.TPM = idconfig.TPMConfig{Device: t.Device, Address: t.Address, AuthKeyHandle: t.AuthKeyHandle, EKTemplate: t.EKTemplate}
		if h := t.HierarchyAuthorization; h != nil && (h.Endorsement != "" || h.Owner != "") {
			out.TPM.HierarchyAuthorization = &idconfig.HierarchyAuthorization{Endorsement: h.Endorsement, Owner: h.Owner}
		}
	case "":
		return c.bad(key+".method", "not set", `set method = "symmetric_key", "x509" or "tpm"`)
	default:
		return c.bad(key+".method", fmt.Sprintf("unknown method %q", a.Method), `use "symmetric_key", "x509" or "tpm"`)
	}
	if o := a.OperationalCert; o != nil {
		checked := *o
		if err := idconfig.CheckOperationalCert(&checked); err != nil {
			var ce *idconfig.ConfigError
			if errors.As(err, &ce) {
				return c.bad(ce.Key, ce.Problem, ce.Fix)
			}
			return err
		}
		att.OperationalCert = &idconfig.OperationalCert{CertID: o.CertID, KeyID: o.KeyID, KeyType: o.KeyType, RenewThreshold: o.RenewThreshold, TrustBundleID: o.TrustBundleID}
	}
	ip.Attestation = att
	return nil
}
