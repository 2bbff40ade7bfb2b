package config

import (
	"errors"
	"strings"
	"testing"
)

func TestParseConfigNamesTheKeyToFix(t *testing.T) {
	tests := []struct{ name, text, key string }{
		{"no homedir", `[provisioning]
source = "none"`, "homedir"},
		{"unknown source", `homedir = "/h"
[provisioning]
source = "cloud"`, "provisioning.source"},
		{"manual without hub", `homedir = "/h"
[provisioning]
source = "manual"`, "provisioning.iothub_hostname"},
		{"manual hub with a port", `homedir = "/h"
[provisioning]
source = "manual"
iothub_hostname = "127.0.0.1:8443"
device_id = "d"
[provisioning.authentication]
method = "sas"
device_id_pk = "k"`, "provisioning.iothub_hostname"},
		{"manual gateway with a port", `homedir = "/h"
[provisioning]
source = "manual"
iothub_hostname = "myhub.azure-devices.net"
gateway_hostname = "parent:8443"
device_id = "d"
[provisioning.authentication]
method = "sas"
device_id_pk = "k"`, "provisioning.gateway_hostname"},
		{"connection string hub with a port", `homedir = "/h"
[provisioning]
source = "manual"
connection_string = "HostName=127.0.0.1:8443;DeviceId=d;SharedAccessKey=AAAA"`, "provisioning.connection_string"},
		{"manual without auth", `homedir = "/h"
[provisioning]
source = "manual"
iothub_hostname = "h"
device_id = "d"`, "provisioning.authentication"},
		{"bad connection string", `homedir = "/h"
[provisioning]
source = "manual"
connection_string = "HostName=h;DeviceId=d;SharedAccessKey=%%%"`, "provisioning.connection_string"},
		{"connection string and hub", `homedir = "/h"
[provisioning]
source = "manual"
connection_string = "HostName=h;DeviceId=d;SharedAccessKey=AAAA"
device_id = "d"`, "provisioning.connection_string"},
		{"dps without scope", `homedir = "/h"
[provisioning]
source = "dps"
[provisioning.attestation]
method = "symmetric_key"
registration_id = "r"
symmetric_key = "k"`, "provisioning.id_scope"},
		{"dps http endpoint", `homedir = "/h"
[provisioning]
source = "dps"
global_endpoint = "http://dps"
id_scope = "s"`, "provisioning.global_endpoint"},
		{"both keys", `homedir = "/h"
[provisioning]
source = "dps"
id_scope = "s"
[provisioning.attestation]
method = "symmetric_key"
registration_id = "r"
symmetric_key = "k"
group_key = "g"`, "provisioning.attestation.symmetric_key"},
		{"x509 without cert", `homedir = "/h"
[provisioning]
source = "dps"
id_scope = "s"
[provisioning.attestation]
method = "x509"`, "provisioning.attestation.identity_cert"},
		{"bad payload", `homedir = "/h"
[provisioning]
source = "dps"
id_scope = "s"
payload = "{not json"
[provisioning.attestation]
method = "x509"
identity_cert = "c"
identity_pk = "k"`, "provisioning.payload"},
		{"operational cert without id", `homedir = "/h"
[provisioning]
source = "dps"
id_scope = "s"
[provisioning.attestation]
method = "symmetric_key"
registration_id = "r"
symmetric_key = "k"
operational_cert = { key_type = "ec-p256" }`, "provisioning.attestation.operational_cert.cert_id"},
		{"operational cert bad key type", `homedir = "/h"
[provisioning]
source = "dps"
id_scope = "s"
[provisioning.attestation]
method = "symmetric_key"
registration_id = "r"
symmetric_key = "k"
operational_cert = { cert_id = "op", key_type = "dsa-1024" }`, "provisioning.attestation.operational_cert.key_type"},
		{"operational cert bad threshold", `homedir = "/h"
[provisioning]
source = "dps"
id_scope = "s"
[provisioning.attestation]
method = "symmetric_key"
registration_id = "r"
symmetric_key = "k"
operational_cert = { cert_id = "op", renew_threshold = "100%" }`, "provisioning.attestation.operational_cert.renew_threshold"},
		{"operational cert threshold not percent", `homedir = "/h"
[provisioning]
source = "dps"
id_scope = "s"
[provisioning.attestation]
method = "symmetric_key"
registration_id = "r"
symmetric_key = "k"
operational_cert = { cert_id = "op", renew_threshold = "2h" }`, "provisioning.attestation.operational_cert.renew_threshold"},
		{"operational cert is the trust bundle", `homedir = "/h"
[provisioning]
source = "dps"
id_scope = "s"
[provisioning.attestation]
method = "symmetric_key"
registration_id = "r"
symmetric_key = "k"
operational_cert = { cert_id = "op", trust_bundle_id = "op" }`, "provisioning.attestation.operational_cert.trust_bundle_id"},
		{"unknown setting", `homedir = "/h"
colour = "blue"`, "colour"},
		{"bad principal", `homedir = "/h"
[[principal]]
name = "p"
uid = 1000
id_type = "root"`, "principal[0].id_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig("identityd.toml", []byte(tt.text))
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Key != tt.key || ce.Fix == "" {
				t.Fatalf("got %v, want a ConfigError for %s with a fix", err, tt.key)
			}
		})
	}
}

func TestOperationalCertDefaults(t *testing.T) {
	c, err := ParseConfig("identityd.toml", []byte(`homedir = "/h"
[provisioning]
source = "dps"
id_scope = "s"
[provisioning.attestation]
method = "symmetric_key"
registration_id = "r"
symmetric_key = "k"
[provisioning.attestation.operational_cert]
cert_id = "op"
`))
	if err != nil {
		t.Fatal(err)
	}
	o := c.Provisioning.Attestation.OperationalCert
	if o.KeyType != "ec-p256" || o.RenewThreshold != "80%" || o.TrustBundleID != "dps-trust-bundle" || o.OperationalKeyIDs() != [2]string{"op-key-1", "op-key-2"} || o.Threshold() != 0.8 {
		t.Fatalf("defaults %+v", o)
	}
}

func TestConfigErrorsNeverShowTheConnectionStringKey(t *testing.T) {
	text := `homedir = "/h"
[provisioning]
source = "manual"
connection_string = "HostName=h;DeviceId=d;SharedAccessKey=c2VjcmV0LWtleQ==;Bogus=1"`
	_, err := ParseConfig("identityd.toml", []byte(text))
	if err == nil || strings.Contains(err.Error(), "c2VjcmV0LWtleQ") {
		t.Fatalf("error %v must exist and not contain the key", err)
	}
}

func TestFingerprintChangesWithProvisioningSettings(t *testing.T) {
	base := `homedir = "/h"
[provisioning]
source = "dps"
id_scope = "%s"
[provisioning.attestation]
method = "symmetric_key"
registration_id = "r"
symmetric_key = "k"`
	a, _ := ParseConfig("a", []byte(strings.Replace(base, "%s", "scope-1", 1)))
	b, _ := ParseConfig("b", []byte(strings.Replace(base, "%s", "scope-2", 1)))
	a2, _ := ParseConfig("a", []byte(strings.Replace(base, "%s", "scope-1", 1)))
	if a.Fingerprint() == b.Fingerprint() || a.Fingerprint() != a2.Fingerprint() {
		t.Fatal("the fingerprint must change with the id scope and only then")
	}
}

// Caches on devices carry the fingerprint: a change of Provisioning's or
// TPMConfig's field names or order provisions every device again.
func TestFingerprintIsStable(t *testing.T) {
	c, err := ParseConfig("x", []byte("homedir = \"/h\"\nhostname=\"x\"\n[provisioning]\nsource = \"dps\"\nid_scope = \"0ne1\"\npayload='{}'\n[provisioning.attestation]\nmethod = \"tpm\"\n[provisioning.attestation.operational_cert]\ncert_id=\"op\"\n[tpm]\naddress = \"127.0.0.1:1\"\nek_template=\"tcg\"\n[tpm.hierarchy_authorization]\nowner=\"o\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Fingerprint(), "8e2b6238a2e9717a981151af72e4859d61acac42287fb747a331706d409a8fd6"; got != want {
		t.Fatalf("fingerprint %s, want %s (as written by earlier releases)", got, want)
	}
}
