package config

import "testing"

func TestServerCertNamesAreTheModulesOwnOrGranted(t *testing.T) {
	c, err := ParseConfig("modrtd.toml", []byte("homedir = \"/var/lib/edgev2/modrtd\"\n[workload.server_cert_names]\nopcua = [\"opcua.plant.example\", \"fd00::5\", \"10.0.0.5\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	w := c.Workload
	for _, tc := range []struct {
		module, name, gateway string
		ok                    bool
	}{
		{"opcua", "opcua", "", true},
		{"opcua", "OPCUA", "", true},
		{"opcua", "opcua.plant.example", "", true},
		{"opcua", "fd00::5", "", true},
		{"opcua", "10.0.0.5", "", true},
		{"sensor", "10.0.0.5", "", false},
		{"opcua", "edgeHub", "gw.example", false},
		{"opcua", "gw.example", "gw.example", false}, // only edgeHub gets the gateway name
		{"sensor", "opcua.plant.example", "", false},
		{"edgeHub", "edgeHub", "gw.example", true},
		{"edgeHub", "gw.example", "gw.example", true},
		{"edgeHub", "myhub.azure-devices.net", "gw.example", false},
		{"edgeHub", "", "", false},
		// A deployment names modules: one named like the hub (or any
		// host outside the device) must not get a certificate for that
		// host from the edge CA, which modules trust. A dotted name needs
		// a grant, as any other name does.
		{"myhub.azure-devices.net", "myhub.azure-devices.net", "", false},
		{"login.microsoftonline.com", "LOGIN.microsoftonline.com", "", false},
		{"opcua.plant.example", "opcua.plant.example", "", false},
		// Nor one named like the gateway (a single-label host name, which
		// downstream devices reach edgeHub by) or localhost.
		{"gateway", "gateway", "gateway", false},
		{"Gateway", "gateway", "gateway", false},
		{"localhost", "localhost", "", false},
		{"LocalHost", "localhost", "gw.example", false},
		{"ip6-localhost", "ip6-localhost", "", false},
		{"ip6-loopback", "IP6-loopback", "", false},
		// The first label of a dotted gateway name is the gateway's too.
		{"gw", "gw", "gw.example", false},
		{"GW", "gw", "gw.example", false},
		{"gwx", "gwx", "gw.example", true},
	} {
		if got := w.ServerCertNameAllowed(tc.module, tc.name, tc.gateway); got != tc.ok {
			t.Errorf("%s asking for %q (gateway %q): %v, want %v", tc.module, tc.name, tc.gateway, got, tc.ok)
		}
	}
	for _, bad := range []string{
		"[workload.server_cert_names]\n\"-x\" = [\"a\"]\n",
		"[workload.server_cert_names]\nm = [\"*.example\"]\n",
		"[workload.server_cert_names]\nm = [\"a b\"]\n",
		"[workload.server_cert_names]\nm = [\"fd00::5/64\"]\n",
	} {
		if _, err := ParseConfig("modrtd.toml", []byte("homedir = \"/x\"\n"+bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// A single-label name of digits ("2130706433") or of hex digits after
// "0x" ("0x7f000001") is an IPv4 address to inet_aton, so to glibc's
// getaddrinfo, curl and OpenSSL-based clients: 127.0.0.1 here. A module
// named so must not get a certificate for its own name, which such a
// client takes for that address; an address needs a grant.
func TestModuleNamedLikeAnIPv4AddressGetsNoCertificateForItsName(t *testing.T) {
	var w WorkloadConfig
	for _, name := range []string{"2130706433", "167772165", "0x7f000001", "0X7F000001", "017700000001", "0xa000005"} {
		if w.ServerCertNameAllowed(name, name, "gw.example") {
			t.Errorf("module %q may get a server certificate for %q, an IPv4 address to inet_aton", name, name)
		}
	}
	for _, name := range []string{"0xsensor", "1st-camera", "opc2", "x7f000001"} {
		if !w.ServerCertNameAllowed(name, name, "gw.example") {
			t.Errorf("module %q may not get a server certificate for its own name", name)
		}
	}
}
