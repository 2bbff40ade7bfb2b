package superconfig

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgev2/edgev2/internal/config"
)

const dpsHead = `[provisioning]
source = "dps"
id_scope = "0ne00000A0A"
`

func TestParseRefusesBadConfigNamingFileLineKeyAndFix(t *testing.T) {
	const secret = "bm90LWEta2V5!!!" // invalid base64: must not be echoed
	cases := []struct {
		name, text string
		line       int
		key        string
		problem    string // substring
		fix        string // substring
	}{
		{"unknown top-level key", "hostname = \"a\"\nhostnmae = \"b\"\n", 2, "hostnmae", "unknown setting", "spelling"},
		{"unknown key in a table", "[provisioning]\nsource = \"none\"\nsoruce = \"dps\"\n", 3, "provisioning.soruce", "unknown setting", "spelling"},
		{"type error", "[keys]\npkcs11_sessions = \"eight\"\n", 2, "keys.pkcs11_sessions", "", "correct the TOML"},
		{"TOML syntax error", "hostname = \"a\n", 1, "", "", "correct the TOML"},
		{"bad hostname", "\n\nhostname = \"not a host\"\n", 3, "hostname", "not a host name", "DNS name"},
		{"wildcard server certificate name", "[workload.server_cert_names]\nopcua = [\"*.plant.example\"]\n", 2, "workload.server_cert_names.opcua[0]", "not a host name", "no wildcards"},
		{"unknown source", "[provisioning]\nsource = \"cloud\"\n", 2, "provisioning.source", "unknown source", `"manual", "dps" or "none"`},
		{"dps without id_scope", "[provisioning]\nsource = \"dps\"\n[provisioning.attestation]\nmethod = \"tpm\"\n", 1, "provisioning.id_scope", "ID scope", "id_scope ="},
		{"dps without attestation", dpsHead, 1, "provisioning.attestation", "missing", "[provisioning.attestation]"},
		{"x509 without identity_cert", dpsHead + "[provisioning.attestation]\nmethod = \"x509\"\nidentity_pk = \"file:///k.pem\"\n", 4, "provisioning.attestation.identity_cert", "needs identity_cert", "identity_cert ="},
		{"x509 cert id nobody issues", dpsHead + "[provisioning.attestation]\nmethod = \"x509\"\nidentity_cert = \"dev\"\nidentity_pk = \"file:///k.pem\"\n", 6, "provisioning.attestation.identity_cert", `"dev" is neither`, "[cert_issuance.certs.dev]"},
		{"symmetric key without registration id", dpsHead + "[provisioning.attestation]\nmethod = \"symmetric_key\"\nsymmetric_key = { value = \"a2V5\" }\n", 4, "provisioning.attestation.registration_id", "registration id", "registration_id"},
		{"symmetric key both individual and group", dpsHead + "[provisioning.attestation]\nmethod = \"symmetric_key\"\nregistration_id = \"r\"\nsymmetric_key = { value = \"a2V5\" }\ngroup_key = { value = \"a2V5\" }\n", 7, "provisioning.attestation.symmetric_key", "exactly one", "symmetric_key ="},
		{"inline key not base64", dpsHead + "[provisioning.attestation]\nmethod = \"symmetric_key\"\nregistration_id = \"r\"\n\nsymmetric_key = { value = \"" + secret + "\" }\n", 8, "provisioning.attestation.symmetric_key.value", "not valid base64", "base64"},
		{"operational cert without cert_id", dpsHead + "[provisioning.attestation]\nmethod = \"symmetric_key\"\nregistration_id = \"r\"\nsymmetric_key = { value = \"a2V5\" }\noperational_cert = { key_type = \"ec-p256\" }\n", 8, "provisioning.attestation.operational_cert.cert_id", "missing", "cert_id ="},
		{"operational cert bad threshold", dpsHead + "[provisioning.attestation]\nmethod = \"symmetric_key\"\nregistration_id = \"r\"\nsymmetric_key = { value = \"a2V5\" }\noperational_cert = { cert_id = \"op\", renew_threshold = \"120%\" }\n", 8, "provisioning.attestation.operational_cert.renew_threshold", "not a percentage", "80%"},
		{"unknown attestation method", dpsHead + "[provisioning.attestation]\nmethod = \"password\"\n", 5, "provisioning.attestation.method", "unknown method", `"tpm"`},
		{"attestation with manual source", "[provisioning]\nsource = \"manual\"\nconnection_string = \"HostName=h;DeviceId=d;SharedAccessKey=a2V5\"\n[provisioning.attestation]\nmethod = \"tpm\"\n", 4, "provisioning.attestation", `only used with source = "dps"`, "change source"},
		{"connection string without key", "[provisioning]\nsource = \"manual\"\nconnection_string = \"HostName=h;DeviceId=d\"\n", 3, "provisioning.connection_string", "SharedAccessKey", "HostName=<hub>"},
		{"tpm device and address", dpsHead + "[provisioning.attestation]\nmethod = \"tpm\"\n[tpm]\ndevice = \"/dev/tpmrm0\"\naddress = \"127.0.0.1:2321\"\n", 8, "tpm.address", "not both", "keep one"},
		{"tpm handle not persistent", dpsHead + "[provisioning.attestation]\nmethod = \"tpm\"\n[tpm]\nauth_key_handle = \"0x01000100\"\n", 7, "tpm.auth_key_handle", "not a persistent handle", "0x81000100"},
		{"tpm unknown EK template", dpsHead + "[provisioning.attestation]\nmethod = \"tpm\"\n[tpm]\nek_template = \"tss\"\n", 7, "tpm.ek_template", "not an EK template", "azure-sdk"},
		{"est issuance without url", "[cert_issuance.certs.web]\nmethod = \"est\"\n", 1, "cert_issuance.certs.web.url", "needs the EST server's URL", "[cert_issuance.est]"},
		{"est url not https", "[cert_issuance.est]\nurl = \"http://est.example\"\n", 2, "cert_issuance.est.url", "not an https:// URL", "https://"},
		// A URL's password (here "a2V5") is never echoed, whether the URL
		// parses or the password is what breaks it.
		{"est url with credentials", "[cert_issuance.est]\nurl = \"https://factory:a2V5@est.example\"\n", 2, "cert_issuance.est.url", "embeds credentials", "https://"},
		{"est url with credentials over http", "[cert_issuance.est]\nurl = \"http://factory:a2V5@est.example\"\n", 2, "cert_issuance.est.url", "http://factory:xxxxx@est.example", "https://"},
		{"est url broken by its password", "[cert_issuance.est]\nurl = \"https://factory:a2V5%zz@est.example\"\n", 2, "cert_issuance.est.url", "not a valid URL", "https://"},
		{"est url mistyped with credentials", "[cert_issuance.est]\nurl = \"https//factory:a2V5@est.example\"\n", 2, "cert_issuance.est.url", "not an https:// URL", "https://"},
		{"dps endpoint mistyped with credentials", dpsHead + "global_endpoint = \"https:/u:a2V5@dps.example\"\n[provisioning.attestation]\nmethod = \"tpm\"\n", 4, "provisioning.global_endpoint", "not an https:// URL", "https://"},
		{"issuance est url with credentials", "[cert_issuance.certs.web]\nmethod = \"est\"\nurl = \"https://factory:a2V5@est.example\"\n", 3, "cert_issuance.certs.web.url", "embeds credentials", "https://"},
		{"dps endpoint with credentials", dpsHead + "global_endpoint = \"https://u:a2V5@dps.example\"\n[provisioning.attestation]\nmethod = \"tpm\"\n", 4, "provisioning.global_endpoint", "embeds credentials", "https://"},
		{"local_ca issuance without local CA", "[cert_issuance.certs.web]\nmethod = \"local_ca\"\n", 2, "cert_issuance.certs.web.method", "needs [cert_issuance.local_ca]", "cert and pk"},
		{"bad auto_renew threshold", "[cert_issuance.certs.web]\nmethod = \"self_signed\"\n[cert_issuance.certs.web.auto_renew]\nthreshold = \"soon\"\n", 4, "cert_issuance.certs.web.auto_renew.threshold", "neither a percentage", "80%"},
		{"issuance expiry refused by certd's parser", "[cert_issuance.certs.web]\nmethod = \"self_signed\"\nexpiry = \"soon\"\n", 3, "cert_issuance.certs.web.expiry", "not a positive duration (in the compiled certd.toml)", "90s"},
		{"pkcs11 key without module", "[preloaded_keys]\nhsm = \"pkcs11:token=t;object=o\"\n", 2, "preloaded_keys.hsm", "pkcs11_lib_path", "pkcs11_lib_path"},
		{"preloaded key of unknown scheme", "[preloaded_keys]\nk = \"http://x/key\"\n", 2, "preloaded_keys.k", "unsupported URI scheme", "file:///"},
		{"preloaded cert relative path", "[preloaded_certs]\nca = \"file://ca.pem\"\n", 2, "preloaded_certs.ca", "absolute path", "file:///"},
		{"edge CA both brought and issued", "[edge_ca]\ncert = \"file:///c.pem\"\npk = \"file:///k.pem\"\nmethod = \"self_signed\"\n", 4, "edge_ca.method", "not both", "keep one"},
		{"id claimed twice", "[preloaded_keys]\ndevice-id = \"file:///other.pem\"\n" + dpsHead + "[provisioning.attestation]\nmethod = \"x509\"\nidentity_cert = \"file:///c.pem\"\nidentity_pk = \"file:///k.pem\"\n", 9, "provisioning.attestation.identity_pk", `key id "device-id"`, "rename"},
		{"principal user is a number", "[[principal]]\nuser = \"1001\"\nkeys = [\"k\"]\n", 2, "principal[0].user", "not a user name", "uid = "},
		{"principal user with quote", "[[principal]]\nkeys = [\"k\"]\nuser = 'a\"); polkit.Result.YES; //'\n", 3, "principal[0].user", "not a user name", "login name"},
		{"principal grants nothing", "[[principal]]\nuser = \"alice\"\nkeys = [\"k\"]\n\n[[principal]]\nuser = \"bob\"\n", 5, "principal[1]", "grants nothing", "keys = "},
		{"principal unknown identity access", "[[principal]]\nuser = \"alice\"\nidentity = \"write\"\n", 3, "principal[0].identity", "unknown access", `"manage"`},
		{"principal manage without modules", "[[principal]]\nuser = \"alice\"\nidentity = \"manage\"\n", 1, "principal[0].identity_modules", "needs the module identities", "identity_modules"},
		{"principal pattern with control char", "[[principal]]\nuser = \"alice\"\nkeys = [\"ok\", \"bad\\u0001\"]\n", 3, "principal[0].keys[1]", "control character", "module-*"},
		{"principal group with identity", "[[principal]]\ngroup = \"ops\"\nid_type = \"module\"\n", 3, "principal[0].id_type", "not a group", "user ="},
		{"module spec not JSON", "[[modules]]\nname = \"m\"\nspec = '{\"name\": '\n", 3, "modules[0].spec", "", "ModuleSpec JSON"},
		{"module bind outside the policy", "[[modules]]\nname = \"m\"\nspec = '''{\"name\": \"m\", \"type\": \"docker\", \"config\": {\"settings\": {\"image\": \"busybox\", \"createOptions\": {\"HostConfig\": {\"Binds\": [\"/srv/x:/cfg\"]}}}}}'''\n", 3, "modules[0].spec", "outside what the runtime policy allows", "runtime.policy.allow"},
		{"module bind of edgev2's config, even if granted", "[[runtime.policy.allow]]\nmodules = [\"m\"]\nbinds = [\"/etc/edgev2\"]\n[[modules]]\nname = \"m\"\nspec = '''{\"name\": \"m\", \"type\": \"docker\", \"config\": {\"settings\": {\"image\": \"busybox\", \"createOptions\": {\"HostConfig\": {\"Binds\": [\"/etc/edgev2:/cfg\"]}}}}}'''\n", 6, "modules[0].spec", "may never bind", "runtime.policy.allow"},
		{"module privileged", "[[modules]]\nname = \"m\"\nspec = '''{\"name\": \"m\", \"type\": \"docker\", \"config\": {\"settings\": {\"image\": \"busybox\", \"createOptions\": {\"HostConfig\": {\"Privileged\": true}}}}}'''\n", 3, "modules[0].spec", "privileged", "runtime.policy.allow"},
		{"module cap beyond the default", "[[modules]]\nname = \"m\"\nspec = '''{\"name\": \"m\", \"type\": \"docker\", \"config\": {\"settings\": {\"image\": \"busybox\", \"createOptions\": {\"HostConfig\": {\"CapAdd\": [\"SYS_ADMIN\"]}}}}}'''\n", 3, "modules[0].spec", "cap_add", "runtime.policy.allow"},
		{"policy grant for nobody", "[[runtime.policy.allow]]\ncap_add = [\"NET_ADMIN\"]\n", 1, "runtime.policy.allow[0]", "neither modules nor images", "modules ="},
		{"module host network", "[[modules]]\nname = \"m\"\nspec = '''{\"name\": \"m\", \"type\": \"docker\", \"config\": {\"settings\": {\"image\": \"busybox\", \"createOptions\": {\"HostConfig\": {\"NetworkMode\": \"host\"}}}}}'''\n", 3, "modules[0].spec", "allow_host_network", "allow_host_network"},
		{"network subnet public", "[runtime.network]\nsubnet = \"8.8.8.0/24\"\n", 2, "runtime.network.subnet", "private", "10.213.0.0/24"},
		{"module bad name", "\n[[modules]]\nname = \"-m\"\nspec = '{}'\n", 3, "modules[0].name", "invalid", "letter or digit"},
		{"module listed twice", "[agent]\nspec = '''{\"name\": \"edgeAgent\", \"type\": \"docker\", \"config\": {\"settings\": {\"image\": \"a\"}}}'''\n[[modules]]\nname = \"edgeAgent\"\nspec = '''{\"name\": \"edgeAgent\", \"type\": \"docker\", \"config\": {\"settings\": {\"image\": \"a\"}}}'''\n", 4, "modules[0].name", "also agent", "own name"},
		{"runtime denylist keys", "[runtime]\nforbidden_bind_prefixes = [\"/etc\", \"var\"]\n", 2, "runtime.forbidden_bind_prefixes", "allowlist", "runtime.policy.allow"},
		{"runtime policy relative bind", "[runtime.policy]\nread_only_binds = [\"/usr/share/zoneinfo\", \"var\"]\n", 2, "runtime.policy.read_only_binds[1]", "absolute", "absolute"},
		{"tpm section without tpm attestation", "[tpm]\ndevice = \"/dev/tpmrm0\"\n", 1, "tpm", "only used by DPS TPM", `method = "tpm"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("/etc/edgev2/config.toml", []byte(tc.text))
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("Parse error = %v (%T), want *config.Error", err, err)
			}
			if ce.File != "/etc/edgev2/config.toml" || ce.Line != tc.line || ce.Key != tc.key {
				t.Errorf("file:line key = %s:%d %q, want /etc/edgev2/config.toml:%d %q (%v)", ce.File, ce.Line, ce.Key, tc.line, tc.key, ce)
			}
			if !strings.Contains(ce.Problem, tc.problem) || ce.Problem == "" {
				t.Errorf("problem %q, want it to say %q", ce.Problem, tc.problem)
			}
			if !strings.Contains(ce.Fix, tc.fix) || ce.Fix == "" {
				t.Errorf("fix %q, want it to say %q", ce.Fix, tc.fix)
			}
			if strings.Contains(ce.Error(), secret) || strings.Contains(ce.Error(), "a2V5") {
				t.Errorf("error echoes a secret: %v", ce)
			}
		})
	}
}

func TestLoadNamesAMissingFileAndTheFix(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.toml")
	_, err := Load(path)
	var ce *config.Error
	if !errors.As(err, &ce) || ce.File != path || ce.Fix == "" {
		t.Fatalf("Load of a missing file: %v", err)
	}
	if err := os.WriteFile(path, []byte("[provisioning]\nsource = \"none\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil || c.Path() != path {
		t.Fatalf("Load: %v", err)
	}
}

func TestErrorStringCarriesLine(t *testing.T) {
	_, err := Parse("cfg.toml", []byte("\nbogus = 1\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "cfg.toml:2: bogus: unknown setting") {
		t.Fatalf("error %q, want it to start with cfg.toml:2: bogus: unknown setting", err)
	}
}

func TestCompileResolvesIdentityPrincipalUIDByUserName(t *testing.T) {
	old := LookupUID
	t.Cleanup(func() { LookupUID = old })
	LookupUID = func(name string) (uint32, error) {
		if name == "edgeagent" {
			return 4242, nil
		}
		return 0, errors.New("unknown user")
	}
	c, err := Parse("c.toml", []byte("[[principal]]\nuser = \"edgeagent\"\nid_type = \"module\"\nname = \"edgeAgent\"\n\n[[principal]]\nuser = \"ghost\"\nid_type = \"local\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Compile(c)
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Key != "principal[1].user" || ce.Line != 7 || !strings.Contains(ce.Fix, "uid =") {
		t.Fatalf("Compile with an unknown user: %v", err)
	}
	c.Principals = c.Principals[:1]
	out, err := Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range out.Files {
		if f.Path == "/etc/edgev2/identityd.toml" && !strings.Contains(string(f.Data), "uid = 4242") {
			t.Fatalf("identityd.toml lacks the looked-up uid:\n%s", f.Data)
		}
	}
}

func TestGlobRegexpIsAnchoredAndEscaped(t *testing.T) {
	cases := []struct{ glob, want string }{
		{"module-*", `^module-[\s\S]*$`},
		{"a.b", `^a\.b$`},
		{"*", `^[\s\S]*$`},
		{`x(y)|z+[0]^$\`, `^x\(y\)\|z\+\[0\]\^\$\\$`},
	}
	for _, tc := range cases {
		if got := globRegexp(tc.glob); got != tc.want {
			t.Errorf("globRegexp(%q) = %q, want %q", tc.glob, got, tc.want)
		}
	}
}
