package main

import (
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	cclient "github.com/edgev2/edgev2/certs/client"
	"github.com/edgev2/edgev2/fault"
	iclient "github.com/edgev2/edgev2/identity/client"
	"github.com/edgev2/edgev2/internal/testenv"
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
