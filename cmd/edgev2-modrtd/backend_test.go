package main

import (
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	certsapi "github.com/edgev2/edgev2/certs/api"
	cclient "github.com/edgev2/edgev2/certs/client"
	"github.com/edgev2/edgev2/fault"
	iclient "github.com/edgev2/edgev2/identity/client"
	"github.com/edgev2/edgev2/internal/testenv"
	kclient "github.com/edgev2/edgev2/keys/client"
	rtconfig "github.com/edgev2/edgev2/modrt/config"
	"github.com/edgev2/edgev2/modrt/modspec"
)

// A module named like the gateway does not get a server certificate for
// the gateway's name, which downstream devices reach edgeHub by: the
// backend looks the gateway up for every module's request, not only for
// edgeHub's. Identityd names no gateway here, so it is the host name, as
// in IOTEDGE_GATEWAYHOSTNAME.
func TestModuleNamedLikeTheGatewayGetsNoServerCertificateForIt(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	if modspec.ValidateName(host) != nil || strings.Contains(host, ".") {
		t.Fatalf("host name %q is not a single-label module name; this test names a module like it", host)
	}
	conn := testenv.StartBus(t).Conn(t)
	cc := cclient.New(conn)
	b := workloadBackend{ids: iclient.New(conn), certs: cc,
		ca: newEdgeCA(cc, nil, "", "", time.Hour, slog.New(slog.DiscardHandler))}
	_, _, err = b.ServerCert(t.Context(), host, host, time.Now().Add(time.Hour))
	if !fault.Is(err, fault.NotAuthorized) {
		t.Fatalf("module %q asking for a server certificate for the gateway's name %q: %v; want NotAuthorized", host, host, err)
	}
}

// A server certificate carries what aziot-edged puts in one: the common
// name as a DNS name or, when it is an address, an IP address, and the
// module's own name beside it — a module name with '_' included, which
// Docker's resolver serves — but never a name the module may not have.
// Issued by the real certd under the quickstart edge CA.
func TestServerCertificateNamesAreAziotEdgedsWithinWhatTheModuleMayHave(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	// The test's root connection stands in for modrtd, and the rule for the
	// grants modrtd's config brings (certd signing with the edge CA's key):
	// what is checked here is the names, not who may ask.
	d := testenv.StartDevice(t, testenv.DeviceOptions{Keyd: &testenv.Daemon{},
		Certd: &testenv.Daemon{Config: "[local_ca.edgev2-edge-ca]\nkey = \"edgev2-edge-ca\"\n"},
		Rules: map[string]string{"modrtd-stand-in": `polkit.addRule(function(action, subject) {
    if (subject.user == "root" && action.id.indexOf("org.edgev2.") == 0) return polkit.Result.YES;
    if (subject.user == "edgecerts" && action.id == "org.edgev2.keys.use" && action.lookup("key_id") == "edgev2-edge-ca") return polkit.Result.YES;
});`}})
	conn := d.Conn()
	cc := cclient.New(conn)
	b := workloadBackend{ids: iclient.New(conn), certs: cc,
		ca:    newEdgeCA(cc, kclient.New(conn), "", "", 24*time.Hour, slog.New(slog.DiscardHandler)),
		names: rtconfig.WorkloadConfig{ServerCertNames: map[string][]string{"opcua": {"10.0.0.5", "opcua.plant.example"}, host: {"api.plant.example"}}}}
	for _, tc := range []struct {
		module, commonName string
		dns                []string
		ips                []string
	}{
		{"sensor", "sensor", []string{"sensor"}, nil},
		{"my_module", "my_module", []string{"my_module"}, nil},
		{"opcua", "opcua.plant.example", []string{"opcua.plant.example", "opcua"}, nil},
		{"opcua", "10.0.0.5", []string{"opcua"}, []string{"10.0.0.5"}},
		{rtconfig.EdgeHubModule, host, []string{host, rtconfig.EdgeHubModule}, nil},
		// Named like the gateway: its grant, but never the gateway's name.
		{host, "api.plant.example", []string{"api.plant.example"}, nil},
	} {
		chainPEM, _, err := b.ServerCert(t.Context(), tc.module, tc.commonName, time.Now().Add(time.Hour))
		if err != nil {
			t.Fatalf("module %q asking for %q: %v", tc.module, tc.commonName, err)
		}
		chain, err := certsapi.ParseChainPEM(chainPEM)
		if err != nil {
			t.Fatal(err)
		}
		leaf := chain[0]
		var ips []string
		for _, ip := range leaf.IPAddresses {
			ips = append(ips, ip.String())
		}
		if leaf.Subject.CommonName != tc.commonName || !slices.Equal(leaf.DNSNames, tc.dns) || !slices.Equal(ips, tc.ips) {
			t.Errorf("module %q asking for %q got CN %q, DNS %q, IP %q; want DNS %q, IP %q",
				tc.module, tc.commonName, leaf.Subject.CommonName, leaf.DNSNames, ips, tc.dns, tc.ips)
		}
	}
}
