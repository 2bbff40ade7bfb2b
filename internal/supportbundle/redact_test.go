package supportbundle

import (
	"strconv"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

func TestRedactTOMLHidesEverySecretAndKeepsTheRest(t *testing.T) {
	cases := []struct {
		name, in string
		secrets  []string // must be gone
		kept     []string // must stay
	}{
		{"connection string", `connection_string = "HostName=hub.example;DeviceId=dev1;SharedAccessKey=c2VjcmV0LWtleQ=="`,
			[]string{"c2VjcmV0LWtleQ=="}, []string{"connection_string"}},
		// Comments are dropped (they may hold an old secret in any shape).
		{"connection string in a comment", `# was: HostName=h;DeviceId=d;SharedAccessKey=b2xkLXNlY3JldA==`,
			[]string{"b2xkLXNlY3JldA==", "HostName=h"}, nil},
		{"password", "[est]\nusername = \"factory\"\npassword = \"hunter2-factory\"", []string{"hunter2-factory"}, []string{`username = 'factory'`}},
		{"pkcs11 pin in a URI", `pkcs11_base_slot = "pkcs11:token=edge?pin-value=123456"`, []string{"123456"}, []string{"pkcs11:token=edge?pin-value=REDACTED"}},
		{"pin key", `user_pin = "987654"`, []string{"987654"}, nil},
		{"symmetric key table", "[provisioning.attestation.symmetric_key]\nvalue = \"ZHBzLWtleS1ieXRlcw==\"\n", []string{"ZHBzLWtleS1ieXRlcw=="}, []string{"[provisioning.attestation.symmetric_key]"}},
		{"dotted key", `symmetric_key.value = "ZG90dGVkLXNlY3JldA=="`, []string{"ZG90dGVkLXNlY3JldA=="}, nil},
		{"inline table", `group_key = { value = "Z3JvdXAtc2VjcmV0" }`, []string{"Z3JvdXAtc2VjcmV0"}, nil},
		{"preloaded keys", "[preloaded_keys]\ndevice-id = \"file:///var/secret/device.key\"", []string{"/var/secret/device.key"}, nil},
		{"multi-line secret", "client_secret = \"\"\"\nline-one-secret\nline-two-secret\n\"\"\"\nhostname = \"gw\"", []string{"line-one-secret", "line-two-secret"}, []string{`hostname = 'gw'`}},
		{"URL with password", `url = "https://factory:s3cr3tpw@est.example/.well-known/est"`, []string{"s3cr3tpw"}, []string{"https://factory:REDACTED@est.example"}},
		{"inline device key of the super-config", `device_id_pk = { value = "ZGV2aWNlLXBrLXNlY3JldA==" }`, []string{"ZGV2aWNlLXBrLXNlY3JldA=="}, []string{"device_id_pk"}},
		{"TPM hierarchy authorization", "[tpm.hierarchy_authorization]\nendorsement = \"endorse-pass\"\nowner = \"owner-pass\"", []string{"endorse-pass", "owner-pass"}, []string{"[tpm.hierarchy_authorization]"}},
		{"key ids stay", "[cert_issuance.device-cert]\nkey_id = \"device-id\"\n[est]\nidentity_key = \"est-id\"", nil, []string{`key_id = 'device-id'`, `identity_key = 'est-id'`}},

		// Shapes a line matcher misses; the parser sees them as the services do.
		{"inline attestation table", "[provisioning]\nattestation = { method = \"symmetric_key\", registration_id = \"reg-1\", symmetric_key = { value = \"aW5saW5lLWF0dGVzdA==\" } }",
			[]string{"aW5saW5lLWF0dGVzdA=="}, []string{"registration_id = 'reg-1'", "method = 'symmetric_key'"}},
		{"double-quoted key name", "[provisioning.attestation.symmetric_key]\n\"value\" = \"ZHEta2V5LXNlY3JldA==\"", []string{"ZHEta2V5LXNlY3JldA=="}, nil},
		{"single-quoted key name", "[provisioning.attestation.group_key]\n'value' = \"c3Eta2V5LXNlY3JldA==\"", []string{"c3Eta2V5LXNlY3JldA=="}, nil},
		{"escaped key name", "[provisioning.authentication]\ndevice_id_pk.\"v\\u0061lue\" = \"ZXNjYXBlZC1zZWNyZXQ=\"", []string{"ZXNjYXBlZC1zZWNyZXQ="}, nil},
		{"escaped secret key name", "[est]\n\"p\\u0061ssword\" = \"ZXNjYXBlZC1wYXNzd29yZA\"", []string{"ZXNjYXBlZC1wYXNzd29yZA"}, nil},
		{"dotted key from the root", `provisioning.attestation.symmetric_key.value = "cm9vdC1kb3R0ZWQ="`, []string{"cm9vdC1kb3R0ZWQ="}, nil},
		{"multi-line basic string", "[est]\npassword = \"\"\"\nbXVsdGktYmFzaWM=\"\"\"", []string{"bXVsdGktYmFzaWM="}, nil},
		{"multi-line literal string", "[provisioning.authentication.device_id_pk]\nvalue = '''\nbXVsdGktbGl0ZXJhbA=='''", []string{"bXVsdGktbGl0ZXJhbA=="}, nil},
		{"array of tables", "[[registry]]\naddress = \"reg.example\"\nusername = \"edge\"\npassword = \"YXJyYXktb2YtdGFibGVz\"\n[[registry]]\naddress = \"reg2.example\"\n",
			[]string{"YXJyYXktb2YtdGFibGVz"}, []string{"address = 'reg.example'", "address = 'reg2.example'"}},
		{"secret in a module spec's JSON", "[[modules]]\nname = \"m\"\nspec = '{\"name\":\"m\",\"config\":{\"auth\":{\"username\":\"u\",\"password\":\"anNvbi1zcGVjLXB3\"},\"env\":{\"API_TOKEN\":{\"value\":\"anNvbi1lbnYtdG9rZW4=\"}}}}'",
			[]string{"anNvbi1zcGVjLXB3", "anNvbi1lbnYtdG9rZW4="}, []string{`"username":"u"`, "name = 'm'"}},
		{"connection string keeps hub and device", "[provisioning]\nconnection_string = \"HostName=hub.example;DeviceId=dev1;SharedAccessKey=Y29ubi1zdHJpbmc=\"",
			[]string{"Y29ubi1zdHJpbmc="}, []string{"HostName=hub.example;DeviceId=dev1;SharedAccessKey=REDACTED"}},
		{"numbers under a secret name", "[tpm.hierarchy_authorization]\nowner = 424242\n", []string{"424242"}, nil},
		{"not TOML: nothing but the position", "hostname = \"gw\"\npassword = \"dW50ZXJtaW5hdGVk\n", []string{"dW50ZXJtaW5hdGVk", "hostname"}, []string{"line 2"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := RedactTOML(c.in)
			var tree map[string]any
			if err := toml.Unmarshal([]byte(got), &tree); err != nil {
				t.Errorf("the redacted file is not valid TOML: %v\n%s", err, got)
			}
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
	got := RedactText(in)
	if !strings.Contains(got, "&se=1700000000") {
		t.Fatalf("the expiry was lost: %s", got)
	}
	for _, s := range []string{"bG9nLXNlY3JldA==", "pa55word", "abcDEF123%3D"} {
		if strings.Contains(got, s) {
			t.Fatalf("%q survived: %s", s, got)
		}
	}
}

// secretShapes are the places the super-config schema and the per-service
// configs can hold a secret, in the TOML spellings config apply accepts;
// SECRET is replaced by the secret.
var secretShapes = []string{
	"password = \"SECRET\"\n",
	"[est]\npassword = 'SECRET'\n",
	"[cert_issuance.est]\nusername = \"u\"\npassword = \"\"\"\nSECRET\"\"\"\n",
	"[provisioning]\nconnection_string = \"HostName=h;DeviceId=d;SharedAccessKey=SECRET\"\n",
	"[provisioning]\nconnection_string = \"SharedAccessKey=SECRET;HostName=h\"\n",
	"[keys]\npkcs11_base_slot = \"pkcs11:token=t?pin-value=SECRET\"\n",
	"[preloaded_keys]\ndev = \"pkcs11:token=t;object=o?pin-value=SECRET\"\n",
	"[provisioning.attestation.symmetric_key]\nvalue = \"SECRET\"\n",
	"[provisioning.attestation]\nmethod = \"symmetric_key\"\ngroup_key = { value = \"SECRET\" }\n",
	"[provisioning]\nattestation = { method = \"symmetric_key\", symmetric_key = { value = \"SECRET\" } }\n",
	"provisioning.authentication.device_id_pk.value = \"SECRET\"\n",
	"[provisioning.authentication]\ndevice_id_pk = { \"v\\u0061lue\" = 'SECRET' }\n",
	"[provisioning.authentication.device_id_pk]\n'value' = '''SECRET'''\n",
	"[tpm.hierarchy_authorization]\nendorsement = \"SECRET\"\nowner = \"o\"\n",
	"[tpm]\nhierarchy_authorization = { owner = \"SECRET\" }\n",
	"[[registry]]\naddress = \"r\"\npassword = \"SECRET\"\n[[registry]]\naddress = \"s\"\n",
	"[est]\nurl = \"https://factory:SECRET@est.example/.well-known/est\"\n",
	"[[modules]]\nname = \"m\"\nspec = '{\"config\":{\"env\":{\"TOKEN\":{\"value\":\"SECRET\"}}}}'\n",
	"[[modules]]\nname = \"m\"\nspec = '{\"config\":{\"settings\":{\"createOptions\":{\"Env\":[\"API_TOKEN=SECRET\"]}}}}'\n",
	"[agent]\nenv = [\"CLIENT_PASSWORD=SECRET\"]\n",
}

// FuzzRedactTOML: a known secret placed in any secret-bearing shape never
// survives redaction, and the output is valid TOML.
func FuzzRedactTOML(f *testing.F) {
	f.Add("hunter2secret", uint8(0))
	f.Add("c2VjcmV0LWtleQ==", uint8(3))
	for i := range secretShapes {
		f.Add("Zm9vYmFyYmF6cXV4", uint8(i))
	}
	f.Fuzz(func(t *testing.T, secret string, shape uint8) {
		// The secret must be writable in every shape (no quotes,
		// separators or escapes) and not part of the template itself.
		if len(secret) < 6 || strings.ContainsAny(secret, "\"'\\;&?@#/=%:{}[],") || !printableWord(secret) {
			return
		}
		tm := secretShapes[int(shape)%len(secretShapes)]
		// Words of the template or of the redacted output (the header,
		// REDACTED, key names) are not secrets.
		if strings.Contains(strings.Replace(tm, "SECRET", "", 1), secret) ||
			strings.Contains(RedactTOML(strings.Replace(tm, "SECRET", "Zm9vYmFyYmF6cXV4", 1)), secret) {
			return
		}
		in := strings.Replace(tm, "SECRET", secret, 1)
		out := RedactTOML(in)
		if strings.Contains(out, secret) {
			t.Fatalf("secret survived in %q: %q", in, out)
		}
		var tree map[string]any
		if err := toml.Unmarshal([]byte(out), &tree); err != nil {
			t.Fatalf("output of %q is not TOML: %v\n%s", in, err, out)
		}
	})
}

// printableWord: visible ASCII only.
func printableWord(s string) bool {
	for _, r := range s {
		if r < 0x21 || r > 0x7e {
			return false
		}
	}
	return true
}

// Secret shapes beyond names: a module's environment as Docker's
// createOptions.Env list ("NAME=value" strings), SAS tokens with sig
// first, bearer tokens and PEM private keys in logs. What diagnoses stays:
// key ids, ordinary variables, slog attributes.
func TestRedactorHidesEnvListsTokensAndPEMKeys(t *testing.T) {
	toml := "[[modules]]\nname = \"m\"\nspec = '{\"config\":{\"settings\":{\"createOptions\":{\"Env\":[\"API_TOKEN=ZW52LWxpc3QtdG9rZW4\",\"DB_PASSWORD=ZW52LWRiLXB3\",\"STORAGE_ACCOUNT_KEY=ZW52LWFjY291bnQta2V5\",\"LOG_LEVEL=debug\",\"KEY_ID=device-id\"]}}}}'\n" +
		"[agent]\nenv = [\"CLIENT_SECRET=YWdlbnQtZW52LXNlY3JldA\", \"UPSTREAM_PROTOCOL=Amqp\"]\n"
	got := RedactTOML(toml)
	for _, s := range []string{"ZW52LWxpc3QtdG9rZW4", "ZW52LWRiLXB3", "ZW52LWFjY291bnQta2V5", "YWdlbnQtZW52LXNlY3JldA"} {
		if strings.Contains(got, s) {
			t.Errorf("env secret %q survived:\n%s", s, got)
		}
	}
	for _, s := range []string{"LOG_LEVEL=debug", "UPSTREAM_PROTOCOL=Amqp", "API_TOKEN=REDACTED"} {
		if !strings.Contains(got, s) {
			t.Errorf("%q was lost:\n%s", s, got)
		}
	}

	logs := "env: API_TOKEN=bG9nLWVudi10b2tlbg PATH=/usr/bin HOSTNAME=gw\n" +
		"token SharedAccessSignature sig=c2lnLWZpcnN0JTNE&se=1700000000&sr=hub%2Fdevices%2Fd\n" +
		"GET /v2/ Authorization: Bearer ZXlKaGJHY2lPaUpTVXpJMU5pSjkuYmVhcmVy\n" +
		"-----BEGIN EC PRIVATE KEY-----\nTUhjQ0FRRUVJUEVNLXByaXZhdGUta2V5\nLWxpbmUtdHdv\n-----END EC PRIVATE KEY-----\n" +
		"level=INFO msg=\"signed\" key_id=device-id cert_id=device-cert\n" +
		`config: {"username": "edge", "password": "anNvbi1sb2ctcHc\"x", "sharedAccessKey":"anNvbi1sb2ctc2Fr", "key_id": "device-id"}` + "\n"
	got = RedactText(logs)
	for _, s := range []string{"anNvbi1sb2ctcHc", "anNvbi1sb2ctc2Fr", "bG9nLWVudi10b2tlbg", "c2lnLWZpcnN0JTNE", "ZXlKaGJHY2lPaUpTVXpJMU5pSjkuYmVhcmVy", "TUhjQ0FRRUVJUEVNLXByaXZhdGUta2V5", "LWxpbmUtdHdv"} {
		if strings.Contains(got, s) {
			t.Errorf("log secret %q survived:\n%s", s, got)
		}
	}
	for _, s := range []string{"PATH=/usr/bin", "HOSTNAME=gw", "&se=1700000000", "key_id=device-id cert_id=device-cert", "BEGIN EC PRIVATE KEY", `"username": "edge"`, `"key_id": "device-id"`} {
		if !strings.Contains(got, s) {
			t.Errorf("%q was lost:\n%s", s, got)
		}
	}
}

// TestRedactTOMLHidesAWholePINWhateverItsCharacters: RFC 7512 URIs take a
// pin-value of any characters but '&' and '%' raw (keyd logs in with
// "my pin 1234" as written), so a URI's PIN is hidden up to the next
// attribute, not up to the first space, quote, ';' or '?'. The token,
// object and other attributes stay.
func TestRedactTOMLHidesAWholePINWhateverItsCharacters(t *testing.T) {
	for _, pin := range []string{"Spaced PIN tail-1", "semi;PIN;tail-2", "ask?PIN-tail-3", "quote'PIN-tail-4", `dq"PIN-tail-5`, "hash#PIN,tail-6"} {
		tail := pin[strings.IndexAny(pin, " ;?'\"#")+1:]
		uri := "pkcs11:token=edge;object=dev?pin-value=" + pin + "&module-name=softhsm2"
		got := RedactTOML("[keys]\npkcs11_base_slot = '''" + uri + "'''\n")
		wantRedacted(t, got, pin, tail, "pkcs11:token=edge;object=dev?pin-value=REDACTED&module-name=softhsm2")
	}
}

// wantRedacted fails when got, the redacted text that held secret, still
// holds tail (the end of secret) or lost kept (what around it must stay).
func wantRedacted(t *testing.T, got, secret, tail, kept string) {
	t.Helper()
	if strings.Contains(got, tail) {
		t.Errorf("part %q of secret %q survived:\n%s", tail, secret, got)
	}
	if !strings.Contains(got, kept) {
		t.Errorf("%q was lost:\n%s", kept, got)
	}
}

// TestRedactHidesAURLPasswordWhateverItsCharacters: a URL's password is
// hidden up to the last '@' of its authority (where Go, curl and browsers
// end it), so one holding '@', a space or a quote leaves nothing behind,
// in a config value or a log line; the user, host and path stay.
func TestRedactHidesAURLPasswordWhateverItsCharacters(t *testing.T) {
	for _, pw := range []string{"p@ss@Tail-1", "my pass Tail-2", "pa'ss Tail-3", `pa"ss Tail-4`} {
		tail := pw[strings.LastIndexAny(pw, "@ '\"")+1:]
		url := "https://factory:" + pw + "@est.example/.well-known/est"
		got := RedactTOML("[cert_issuance.est]\nurl = '''" + url + "'''\n")
		wantRedacted(t, got, pw, tail, "https://factory:REDACTED@est.example/.well-known/est")
	}
	got := RedactText("pull https://edge:p@ss@Tail-5@registry.example:5000/v2/x failed\n")
	if strings.Contains(got, "Tail-5") || !strings.Contains(got, "https://edge:REDACTED@registry.example:5000/v2/x failed") {
		t.Errorf("log line redacted as %q", got)
	}
}

// TestRedactTextHidesQuotedAndLogfmtSecrets: logfmt (Go's slog text
// handler, logrus, zap's console output) quotes a value with a space, and
// escapes the quotes of one inside a quoted error; a module's or
// service's log line keeps no part of a secret so written, under the
// names that always mean a secret, in any case. The attributes that name
// keys and tokens (key_id=, key=, token=<label>) stay.
func TestRedactTextHidesQuotedAndLogfmtSecrets(t *testing.T) {
	logs := `time=2026-01-01T00:00:00Z level=INFO msg=login password="hunter two Tail-1"` + "\n" +
		`env: API_TOKEN="tok with space Tail-2" PATH=/usr/bin` + "\n" +
		`level=WARN msg=refused client_secret=Y2xpZW50LVRhaWwtMw api_key="Tail-4 key" sas_token=Tail-6-c2Fz` + "\n" +
		`level=ERROR msg="call failed" err="auth failed: password=\"Tail-5 x\" rejected"` + "\n" +
		`level=INFO msg="pkcs11 key deleted" key=device-id token=edgev2 key_id=device-id private_key_id=k1` + "\n" +
		`create {"Env":["API_TOKEN=spaced Tail-7","LOG_LEVEL=debug info"]}` + "\n"
	got := RedactText(logs)
	for _, s := range []string{"Tail-1", "Tail-2", "Y2xpZW50LVRhaWwtMw", "Tail-4", "Tail-5", "Tail-6", "Tail-7"} {
		if strings.Contains(got, s) {
			t.Errorf("%q survived:\n%s", s, got)
		}
	}
	for _, s := range []string{"level=INFO msg=login password=", "PATH=/usr/bin", "level=WARN msg=refused client_secret=", `msg="call failed"`, "rejected", "key=device-id token=edgev2 key_id=device-id private_key_id=k1", `"LOG_LEVEL=debug info"`, `"API_TOKEN=REDACTED"`} {
		if !strings.Contains(got, s) {
			t.Errorf("%q was lost:\n%s", s, got)
		}
	}
}

// A password with a quote or a backslash in it, quoted (%q) in an error
// that a log line quotes again, is hidden whole: the escaped quote inside
// is \\\" there, which does not end the value.
func TestRedactTextHidesASecretQuotedTwiceWithQuotesInIt(t *testing.T) {
	for _, pw := range []string{`p"q Tail-8`, `p\"q Tail-8`, `p\ Tail-8`, `p\\"Tail-8`} {
		inner := "auth failed: password=" + strconv.Quote(pw) + " rejected"
		line := `level=ERROR msg="call failed" err=` + strconv.Quote(inner) + " module=m1"
		got := RedactText(line)
		if strings.Contains(got, "Tail-8") || !strings.Contains(got, "rejected") || !strings.Contains(got, "module=m1") {
			t.Errorf("password %q:\n%s\n  -> %s", pw, line, got)
		}
	}
}
