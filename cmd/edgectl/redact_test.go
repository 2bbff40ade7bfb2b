package main

import (
	"strings"
	"testing"
)

func TestRedactTOMLHidesEverySecretAndKeepsTheRest(t *testing.T) {
	cases := []struct {
		name, in string
		secrets  []string // must be gone
		kept     []string // must stay
	}{
		{"connection string", `connection_string = "HostName=hub.example;DeviceId=dev1;SharedAccessKey=c2VjcmV0LWtleQ=="`,
			[]string{"c2VjcmV0LWtleQ=="}, []string{"connection_string"}},
		{"connection string in a comment", `# was: HostName=h;DeviceId=d;SharedAccessKey=b2xkLXNlY3JldA==`,
			[]string{"b2xkLXNlY3JldA=="}, []string{"HostName=h;DeviceId=d;SharedAccessKey=REDACTED"}},
		{"password", "[est]\nusername = \"factory\"\npassword = \"hunter2-factory\"", []string{"hunter2-factory"}, []string{`username = "factory"`}},
		{"pkcs11 pin in a URI", `pkcs11_base_slot = "pkcs11:token=edge?pin-value=123456"`, []string{"123456"}, []string{"pkcs11:token=edge?pin-value=REDACTED"}},
		{"pin key", `user_pin = "987654"`, []string{"987654"}, nil},
		{"symmetric key table", "[provisioning.attestation.symmetric_key]\nvalue = \"ZHBzLWtleS1ieXRlcw==\"\n", []string{"ZHBzLWtleS1ieXRlcw=="}, []string{"[provisioning.attestation.symmetric_key]"}},
		{"dotted key", `symmetric_key.value = "ZG90dGVkLXNlY3JldA=="`, []string{"ZG90dGVkLXNlY3JldA=="}, nil},
		{"inline table", `group_key = { value = "Z3JvdXAtc2VjcmV0" }`, []string{"Z3JvdXAtc2VjcmV0"}, nil},
		{"preloaded keys", "[preloaded_keys]\ndevice-id = \"file:///var/secret/device.key\"", []string{"/var/secret/device.key"}, nil},
		{"multi-line secret", "client_secret = \"\"\"\nline-one-secret\nline-two-secret\n\"\"\"\nhostname = \"gw\"", []string{"line-one-secret", "line-two-secret"}, []string{`hostname = "gw"`}},
		{"URL with password", `url = "https://factory:s3cr3tpw@est.example/.well-known/est"`, []string{"s3cr3tpw"}, []string{"https://factory:REDACTED@est.example"}},
		{"inline device key of the super-config", `device_id_pk = { value = "ZGV2aWNlLXBrLXNlY3JldA==" }`, []string{"ZGV2aWNlLXBrLXNlY3JldA=="}, []string{"device_id_pk"}},
		{"TPM hierarchy authorization", "[tpm.hierarchy_authorization]\nendorsement = \"endorse-pass\"\nowner = \"owner-pass\"", []string{"endorse-pass", "owner-pass"}, []string{"[tpm.hierarchy_authorization]"}},
		{"key ids stay", "[cert_issuance.device-cert]\nkey_id = \"device-id\"\n[est]\nidentity_key = \"est-id\"", nil, []string{`key_id = "device-id"`, `identity_key = "est-id"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := redactTOML(c.in)
			for _, s := range c.secrets {
				if strings.Contains(got, s) {
					t.Errorf("secret %q survived:\n%s", s, got)
				}
			}
			for _, s := range c.kept {
				if !strings.Contains(got, s) {
					t.Errorf("%q was lost:\n%s", s, got)
				}
			}
		})
	}
}

func TestRedactTextHidesSecretsInLogs(t *testing.T) {
	in := "provisioned with HostName=h;DeviceId=d;SharedAccessKey=bG9nLXNlY3JldA==\npull https://u:pa55word@registry:5000/x\n" +
		"token SharedAccessSignature sr=hub%2Fdevices%2Fd&sig=abcDEF123%3D&se=1700000000\n"
	got := redactText(in)
	if !strings.Contains(got, "&se=1700000000") {
		t.Fatalf("the expiry was lost: %s", got)
	}
	for _, s := range []string{"bG9nLXNlY3JldA==", "pa55word", "abcDEF123%3D"} {
		if strings.Contains(got, s) {
			t.Fatalf("%q survived: %s", s, got)
		}
	}
}

// FuzzRedactTOML: whatever the secret, a password, a SharedAccessKey or a
// pin-value never survives redaction.
func FuzzRedactTOML(f *testing.F) {
	f.Add("hunter2secret")
	f.Add("c2VjcmV0LWtleQ==")
	f.Fuzz(func(t *testing.T, secret string) {
		if len(secret) < 6 || strings.ContainsAny(secret, "\"'\\\n\r;&?@# \t=") {
			return
		}
		tmpl := []string{
			"password = \"%s\"\n",
			"[est]\npassword = '%s'\n",
			"connection_string = \"HostName=h;DeviceId=d;SharedAccessKey=%s\"\n",
			"pkcs11_base_slot = \"pkcs11:token=t?pin-value=%s\"\n",
			"[provisioning.attestation.symmetric_key]\nvalue = \"%s\"\n",
		}
		for _, tm := range tmpl {
			in := strings.Replace(tm, "%s", secret, 1)
			if strings.Contains(strings.Replace(tm, "%s", "", 1), secret) {
				continue
			}
			if out := redactTOML(in); strings.Contains(out, secret) {
				t.Fatalf("secret survived in %q: %q", in, out)
			}
		}
	})
}
