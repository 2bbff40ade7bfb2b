package est

import (
	"net/http/httptest"

	"github.com/edgev2/edgev2/internal/labcloud/labhost"
	"github.com/edgev2/edgev2/internal/labcloud/testlog"
)

// TB is the part of testing.TB StartTestServer uses, so this file need not
// import testing.
type TB interface {
	Helper()
	Cleanup(func())
	Fatalf(format string, args ...any)
	TempDir() string
}

// StartTestServer runs the EST CA in-process over HTTPS with the same TLS
// setup as edgev2-labcloud, for other packages' tests, reached as a real
// EST server is: at a host name without a port, on 443 (its own loopback
// address and /etc/hosts line, see labhost; needs root). It returns the
// base URL ("https://NAME"; EST lives under url+PathPrefix), the CA
// certificate in PEM and the server. cfg.BaseURL defaults to the returned
// URL. The server stops on t's cleanup.
func StartTestServer(t TB, cfg Config) (url string, caPEM []byte, srv *Server) {
	t.Helper()
	host, ln := labhost.Listen(t)
	ts := httptest.NewUnstartedServer(nil)
	ts.Listener.Close()
	ts.Listener = ln
	url = "https://" + host.Name
	if cfg.BaseURL == "" {
		cfg.BaseURL = url
	}
	logger := testlog.Logger(t, "labcloud est")
	srv, err := NewServer(cfg, t.TempDir(), logger)
	if err != nil {
		ts.Close()
		t.Fatalf("start EST test server: %v", err)
	}
	tlsCfg, err := srv.TLSConfig(host.Name, host.IP.String())
	if err != nil {
		ts.Close()
		t.Fatalf("start EST test server: %v", err)
	}
	ts.Config.Handler = srv.Handler()
	ts.TLS = tlsCfg
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return url, srv.CAPEM(), srv
}
