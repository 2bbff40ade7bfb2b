package config

import (
	"errors"
	"strings"
	"testing"
)

// The configurations the tests below start from; a case adds to one.
const (
	home      = "homedir = \"/h\"\n"
	manual    = home + "[provisioning]\nsource = \"manual\"\n"
	manualSAS = "device_id = \"d\"\n[provisioning.authentication]\nmethod = \"sas\"\ndevice_id_pk = \"k\""
	dps       = home + "[provisioning]\nsource = \"dps\"\nid_scope = \"s\"\n"
	dpsSymKey = dps + "[provisioning.attestation]\nmethod = \"symmetric_key\"\nregistration_id = \"r\"\nsymmetric_key = \"k\"\n"
)

func TestParseConfigNamesTheKeyToFix(t *testing.T) {
	tests := []struct{ name, text, key string }{
		{"no homedir", "[provisioning]\nsource = \"none\"", "homedir"},
		{"unknown source", home + "[provisioning]\nsource = \"cloud\"", "provisioning.source"},
		{"manual without hub", manual, "provisioning.iothub_hostname"},
		{"manual hub with a port", manual + "iothub_hostname = \"127.0.0.1:8443\"\n" + manualSAS, "provisioning.iothub_hostname"},
		{"manual gateway with a port", manual + "iothub_hostname = \"myhub.azure-devices.net\"\ngateway_hostname = \"parent:8443\"\n" + manualSAS, "provisioning.gateway_hostname"},
		{"connection string hub with a port", manual + `connection_string = "HostName=127.0.0.1:8443;DeviceId=d;SharedAccessKey=AAAA"`, "provisioning.connection_string"},
		{"manual without auth", manual + "iothub_hostname = \"h\"\ndevice_id = \"d\"", "provisioning.authentication"},
		{"bad connection string", manual + `connection_string = "HostName=h;DeviceId=d;SharedAccessKey=%%%"`, "provisioning.connection_string"},
		{"connection string and hub", manual + `connection_string = "HostName=h;DeviceId=d;SharedAccessKey=AAAA"` + "\ndevice_id = \"d\"", "provisioning.connection_string"},
		{"dps without scope", home + "[provisioning]\nsource = \"dps\"\n[provisioning.attestation]\nmethod = \"symmetric_key\"\nregistration_id = \"r\"\nsymmetric_key = \"k\"", "provisioning.id_scope"},
		{"dps http endpoint", home + "[provisioning]\nsource = \"dps\"\nglobal_endpoint = \"http://dps\"\nid_scope = \"s\"", "provisioning.global_endpoint"},
		{"both keys", dpsSymKey + "group_key = \"g\"", "provisioning.attestation.symmetric_key"},
		{"x509 without cert", dps + "[provisioning.attestation]\nmethod = \"x509\"", "provisioning.attestation.identity_cert"},
		{"bad payload", dps + "payload = \"{not json\"\n[provisioning.attestation]\nmethod = \"x509\"\nidentity_cert = \"c\"\nidentity_pk = \"k\"", "provisioning.payload"},
		{"operational cert without id", dpsSymKey + `operational_cert = { key_type = "ec-p256" }`, "provisioning.attestation.operational_cert.cert_id"},
		{"operational cert bad key type", dpsSymKey + `operational_cert = { cert_id = "op", key_type = "dsa-1024" }`, "provisioning.attestation.operational_cert.key_type"},
		{"operational cert bad threshold", dpsSymKey + `operational_cert = { cert_id = "op", renew_threshold = "100%" }`, "provisioning.attestation.operational_cert.renew_threshold"},
		{"operational cert threshold not percent", dpsSymKey + `operational_cert = { cert_id = "op", renew_threshold = "2h" }`, "provisioning.attestation.operational_cert.renew_threshold"},
		{"operational cert is the trust bundle", dpsSymKey + `operational_cert = { cert_id = "op", trust_bundle_id = "op" }`, "provisioning.attestation.operational_cert.trust_bundle_id"},
		{"unknown setting", home + `colour = "blue"`, "colour"},
		{"bad principal", home + "[[principal]]\nname = \"p\"\nuid = 1000\nid_type = \"root\"", "principal[0].id_type"},
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
	c, err := ParseConfig("identityd.toml", []byte(dpsSymKey+"[provisioning.attestation.operational_cert]\ncert_id = \"op\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	o := c.Provisioning.Attestation.OperationalCert
	if o.KeyType != "ec-p256" || o.RenewThreshold != "80%" || o.TrustBundleID != "dps-trust-bundle" || o.OperationalKeyIDs() != [2]string{"op-key-1", "op-key-2"} || o.Threshold() != 0.8 {
		t.Fatalf("defaults %+v", o)
	}
}

func TestConfigErrorsNeverShowTheConnectionStringKey(t *testing.T) {
	text := manual + `connection_string = "HostName=h;DeviceId=d;SharedAccessKey=c2VjcmV0LWtleQ==;Bogus=1"`
	_, err := ParseConfig("identityd.toml", []byte(text))
	if err == nil || strings.Contains(err.Error(), "c2VjcmV0LWtleQ") {
		t.Fatalf("error %v must exist and not contain the key", err)
	}
}

func TestFingerprintChangesWithProvisioningSettings(t *testing.T) {
	withScope := func(scope string) []byte {
		return []byte(strings.Replace(dpsSymKey, `id_scope = "s"`, `id_scope = "`+scope+`"`, 1))
	}
	a, _ := ParseConfig("a", withScope("scope-1"))
	b, _ := ParseConfig("b", withScope("scope-2"))
	a2, _ := ParseConfig("a", withScope("scope-1"))
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

// TestConfigErrorsNeverShowAnEndpointPassword: a global_endpoint with a
// user:password@ part is refused naming the setting, showing the URL with
// the password redacted; one the password keeps from parsing is not shown.
func TestConfigErrorsNeverShowAnEndpointPassword(t *testing.T) {
	for _, c := range []struct{ endpoint, says string }{
		{"https://u:ZW5kcG9pbnQtcHc@dps.example", "https://u:xxxxx@dps.example"},
		{"http://u:ZW5kcG9pbnQtcHc@dps.example", "embeds credentials"},
		{"https://u:ZW5kcG9pbnQtcHc%zz@dps.example", "not a valid URL"},
		// Mistyped: the credentials are no authority, but the URL parses.
		{"https//u:ZW5kcG9pbnQtcHc@dps.example", "not an https URL"},
		{"https:/u:ZW5kcG9pbnQtcHc@dps.example", "not an https URL"},
	} {
		text := strings.Replace(dpsSymKey, "id_scope", "global_endpoint = \""+c.endpoint+"\"\nid_scope", 1)
		_, err := ParseConfig("identityd.toml", []byte(text))
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Key != "provisioning.global_endpoint" || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: got %v, want a ConfigError for provisioning.global_endpoint saying %q", c.endpoint, err, c.says)
		}
		if err != nil && strings.Contains(err.Error(), "ZW5kcG9pbnQtcHc") {
			t.Errorf("%s: the error shows the password: %v", c.endpoint, err)
		}
	}
}
