package e2e_test

import (
	"testing"

	"github.com/edgev2/edgev2/internal/superconfig"
	"github.com/edgev2/edgev2/internal/testenv"
)

// TestCompiledPrincipalRulesGrantExactlyTheConfiguredIDs installs the rules
// compiled from a [[principal]] entry into the real polkitd and asks it,
// for the real second uid, about granted and other ids.
func TestCompiledPrincipalRulesGrantExactlyTheConfiguredIDs(t *testing.T) {
	d := testenv.StartDevice(t, testenv.DeviceOptions{})
	pk := d.Polkit
	// Connections of the real uids: polkit asks the bus whose they are.
	tester := d.ConnAs(t, testenv.OtherUser).Names()[0]
	keysUserConn := d.ConnAs(t, testenv.ServiceUser).Names()[0]

	c, err := superconfig.Parse("/etc/edgev2/config.toml", []byte(`
[[principal]]
user = "`+testenv.OtherUser+`"
keys = ["module-*", "shared.signing"]
keys_export = ["module-a"]
certs_manage = ["tls-server"]
certs_issue = ["edge-ca"]
certs_issue_ca = ["lab-ca"]
modules = ["telemetry-*"]
modules_manage = ["telemetry-*"]
identity = "manage"
identity_modules = ["telemetry-*"]

# A group: the tester's own (primary) group.
[[principal]]
group = "`+testenv.OtherUser+`"
keys_manage = ["group-*"]

# A name that would break out of a string literal if it were not encoded.
[[principal]]
user = "nobody"
keys = ["\"); return polkit.Result.YES; (\""]
`))
	if err != nil {
		t.Fatal(err)
	}
	out, err := superconfig.Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	var rules string
	for _, f := range out.Files {
		if f.Path == superconfig.RulesPath {
			rules = string(f.Data)
		}
	}
	// Before the rules: the shipped defaults deny the tester.
	if ok, _ := pk.Check(t, tester, "org.edgev2.keys.use", map[string]string{"key_id": "module-a"}); ok {
		t.Fatal("keys.use allowed before the compiled rules were installed")
	}
	pk.AddRule(t, "superconfig-principals", rules)

	cases := []struct {
		who     string
		action  string
		details map[string]string
		allowed bool
	}{
		{tester, "org.edgev2.keys.use", map[string]string{"key_id": "module-a"}, true},
		{tester, "org.edgev2.keys.use", map[string]string{"key_id": "module-"}, true},
		{tester, "org.edgev2.keys.use", map[string]string{"key_id": "shared.signing"}, true},
		{tester, "org.edgev2.keys.use", map[string]string{"key_id": "sharedXsigning"}, false}, // '.' is literal
		{tester, "org.edgev2.keys.use", map[string]string{"key_id": "device-id"}, false},
		{tester, "org.edgev2.keys.use", map[string]string{"key_id": "xmodule-a"}, false}, // anchored at the start
		{tester, "org.edgev2.keys.use", map[string]string{"key_id": "module-a\nx"}, true},
		{tester, "org.edgev2.keys.use", nil, false},
		{tester, "org.edgev2.keys.manage", map[string]string{"key_id": "module-a"}, false},
		{tester, "org.edgev2.keys.manage", map[string]string{"key_id": "group-1"}, true}, // through the group entry
		{tester, "org.edgev2.keys.manage", map[string]string{"key_id": "xgroup-1"}, false},
		{tester, "org.edgev2.keys.export", map[string]string{"key_id": "module-a"}, true},
		{tester, "org.edgev2.keys.export", map[string]string{"key_id": "module-ab"}, false}, // anchored at the end
		{tester, "org.edgev2.certs.manage", map[string]string{"cert_id": "tls-server"}, true},
		{tester, "org.edgev2.certs.manage", map[string]string{"cert_id": "device-id"}, false},
		// Issuing under a CA: only the configured subjects of matching CAs.
		{tester, "org.edgev2.certs.issue", map[string]string{"cert_id": "edge-ca", "issued_cert_id": "tls-server", "subject": "configured"}, true},
		{tester, "org.edgev2.certs.issue", map[string]string{"cert_id": "edge-ca", "issued_cert_id": "tls-server", "subject": "requested"}, false},
		{tester, "org.edgev2.certs.issue", map[string]string{"cert_id": "edge-ca", "issued_cert_id": "tls-server"}, false},
		{tester, "org.edgev2.certs.issue", map[string]string{"cert_id": "local-ca", "issued_cert_id": "tls-server", "subject": "configured"}, false},
		{tester, "org.edgev2.certs.issue-ca", map[string]string{"cert_id": "lab-ca", "issued_cert_id": "sub"}, true},
		{tester, "org.edgev2.certs.issue-ca", map[string]string{"cert_id": "edge-ca", "issued_cert_id": "sub"}, false},
		{tester, "org.edgev2.modules.read", map[string]string{"module_id": "telemetry-1"}, true},
		{tester, "org.edgev2.modules.read", nil, true}, // listing
		{tester, "org.edgev2.modules.manage", map[string]string{"module_id": "telemetry-1"}, true},
		{tester, "org.edgev2.modules.manage", map[string]string{"module_id": "edgeAgent"}, false},
		{tester, "org.edgev2.modules.manage", nil, false}, // image operations need modules_manage = ["*"]
		{tester, "org.edgev2.identity.manage", map[string]string{"module_id": "telemetry-1"}, true},
		{tester, "org.edgev2.identity.manage", map[string]string{"module_id": "edgeAgent"}, false},
		{tester, "org.edgev2.identity.reprovision", nil, false},
		// Another user gets none of it.
		{keysUserConn, "org.edgev2.keys.export", map[string]string{"key_id": "module-a"}, false},
		{keysUserConn, "org.edgev2.modules.manage", map[string]string{"module_id": "telemetry-1"}, false},
		{keysUserConn, "org.edgev2.keys.manage", map[string]string{"key_id": "group-1"}, false},
		{keysUserConn, "org.edgev2.certs.issue", map[string]string{"cert_id": "edge-ca", "issued_cert_id": "tls-server", "subject": "configured"}, false},
	}
	for _, tc := range cases {
		ok, _ := pk.Check(t, tc.who, tc.action, tc.details)
		if ok != tc.allowed {
			who := testenv.OtherUser
			if tc.who == keysUserConn {
				who = testenv.ServiceUser
			}
			t.Errorf("%s %s %v: allowed=%v, want %v", who, tc.action, tc.details, ok, tc.allowed)
		}
	}
}
