package hub

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/edgev2/edgev2/internal/cloudhttp/cloudhttptest"
	"github.com/edgev2/edgev2/internal/labcloud/labhost"
	"github.com/edgev2/edgev2/internal/testpki"
)

// deviceKey is the device's symmetric key, shared with the fake hub.
const deviceKey = "zqtyZCGuKg/UHvSzgYnNod/uHChWrzGGtHSgPi4cC2U="

const hubName = "myhub.azure-devices.net"

var fixedNow = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// The fake cloud of cloudhttptest, named as these tests use it.
type seen = cloudhttptest.Request

var (
	hmacSigner = cloudhttptest.HMACSigner
	newCA      = testpki.NewCA
)

// fakeHub answers every request with reply and records what it got.
type fakeHub struct {
	*cloudhttptest.Server
	host labhost.Host // reached as a real hub is: a bare name on 443
}

func newFakeHub(t *testing.T, tlsCfg *tls.Config, reply func(seen) (int, map[string]string, string)) *fakeHub {
	t.Helper()
	host, ln := labhost.Listen(t)
	if tlsCfg == nil {
		tlsCfg = &tls.Config{}
	}
	tlsCfg = tlsCfg.Clone()
	tlsCfg.Certificates = []tls.Certificate{testpki.SelfSigned(t, host.Name)}
	srv := cloudhttptest.NewServer(t, tlsCfg, ln, cloudhttptest.Answer(func(r seen) cloudhttptest.Reply {
		status, header, body := reply(r)
		return cloudhttptest.Reply{Status: status, Header: header, Body: body}
	}))
	return &fakeHub{Server: srv, host: host}
}

func (f *fakeHub) addr() string { return f.host.Name }

// fixed returns a reply func that always answers the same.
func fixed(status int, body string) func(seen) (int, map[string]string, string) {
	return func(seen) (int, map[string]string, string) { return status, nil, body }
}

// sasClient is a SAS-authenticated client for device edge-1 of hubName,
// sending its requests to f.
func sasClient(t *testing.T, f *fakeHub) *Client {
	t.Helper()
	c, err := New(Config{
		HubHost: hubName, GatewayHost: f.addr(), DeviceID: "edge-1",
		SAS: hmacSigner(t, deviceKey), TrustAnchors: f.Anchors(),
		Now: func() time.Time { return fixedNow }, Timeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}
