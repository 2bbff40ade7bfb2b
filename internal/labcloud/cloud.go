// Package labcloud composes edgev2-labcloud's services — the EST CA, DPS
// and IoT Hub — on one HTTPS listener, for the command and for tests.
package labcloud

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"

	"github.com/edgev2/edgev2/internal/labcloud/dps"
	"github.com/edgev2/edgev2/internal/labcloud/est"
	"github.com/edgev2/edgev2/internal/labcloud/hub"
	"github.com/edgev2/edgev2/internal/labcloud/labhost"
	"github.com/edgev2/edgev2/internal/labcloud/testlog"
)

// Config is the whole configuration file: [est], [dps] and [hub].
type Config struct {
	EST est.Config `toml:"est"`
	DPS dps.Config `toml:"dps"`
	Hub hub.Config `toml:"hub"`
}

// Services are the three servers sharing one listener.
type Services struct {
	EST *est.Server
	DPS *dps.Server
	Hub *hub.Server
}

// Open opens every service with its state under stateDir (est/, dps/,
// hub/). hostname is the bare host name (no port) at which the listener is
// reached on 443, as Azure's endpoints are: the default hub host name (and
// so DPS's assignedHub) and the EST base URL. Configuration mistakes are
// *labconfig.Error.
func Open(cfg Config, stateDir, hostname string, logger *slog.Logger) (*Services, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.EST.BaseURL == "" {
		cfg.EST.BaseURL = "https://" + hostname
	}
	if cfg.Hub.Hostname == "" {
		cfg.Hub.Hostname = hostname
	}
	if cfg.DPS.AssignedHub == "" {
		cfg.DPS.AssignedHub = cfg.Hub.Hostname
	}
	e, err := est.NewServer(cfg.EST, filepath.Join(stateDir, "est"), logger.With("service", "est"))
	if err != nil {
		return nil, err
	}
	h, err := hub.NewServer(cfg.Hub, filepath.Join(stateDir, "hub"), logger.With("service", "hub"))
	if err != nil {
		return nil, err
	}
	d, err := dps.NewServer(cfg.DPS, filepath.Join(stateDir, "dps"), h, logger.With("service", "dps"))
	if err != nil {
		return nil, err
	}
	d.SetIssuer(e) // credential policies issue from the EST CA
	return &Services{EST: e, DPS: d, Hub: h}, nil
}

// Handler routes EST (/.well-known/est/, /crl), the hub (/devices/) and
// DPS (/{idScope}/registrations/...; every other path gets DPS's 404).
func (s *Services) Handler() http.Handler {
	mux := http.NewServeMux()
	estH := s.EST.Handler()
	mux.Handle(est.PathPrefix, estH)
	mux.Handle("/crl", estH)
	mux.Handle(est.AdminRevokePath, estH)
	mux.Handle(hub.PathPrefix, s.Hub.Handler())
	mux.Handle("/", s.DPS.Handler())
	return mux
}

// TLSConfig is EST's server configuration (a certificate for hosts from
// the EST CA) changed to ask for a client certificate without verifying
// it at the TLS level and without naming acceptable CAs, as Azure's
// endpoints do: DPS individual X.509 enrollments and hub devices use
// self-signed certificates, real DPS answers an unknown certificate with
// 401002 JSON rather than a handshake failure, and a client (Go's
// crypto/tls among them) sends its certificate only if it matches the CA
// list, when there is one. Every handler verifies the certificate itself:
// EST against its CA and bootstrap CAs, DPS against the enrollments, the
// hub against registered thumbprints.
func (s *Services) TLSConfig(hosts ...string) (*tls.Config, error) {
	c, err := s.EST.TLSConfig(hosts...)
	if err != nil {
		return nil, err
	}
	c.ClientAuth = tls.RequestClientCert
	c.ClientCAs = nil
	return c, nil
}

// TB is the part of testing.TB StartTestCloud uses.
type TB interface {
	Helper()
	Cleanup(func())
	Fatalf(format string, args ...any)
	TempDir() string
}

// Cloud is a running in-process labcloud.
type Cloud struct {
	URL         string // "https://HOSTNAME" (port 443)
	Hostname    string // the bare name, resolving to Addr's IP through /etc/hosts
	Addr        string // "127.77.x.y:443", this instance's own loopback address
	CAPEM       []byte // trust anchor of the HTTPS certificate (the EST CA)
	HubHostname string // what DPS assigns and hub SAS tokens name (Hostname by default)
	IDScope     string
	*Services
}

// StartTestCloud runs EST, DPS and the hub in-process over HTTPS with
// edgev2-labcloud's TLS setup and routing, as a real endpoint is reached:
// on port 443 at a host name without a port (its own 127.77.x.y and an
// /etc/hosts line, see labhost; needs root). State in t.TempDir(); it
// stops, and its hosts line goes, on t's cleanup. Instances run side by side.
func StartTestCloud(t TB, cfg Config) *Cloud {
	t.Helper()
	host, ln := labhost.Listen(t)
	logger := testlog.Logger(t, "labcloud")
	svc, err := Open(cfg, t.TempDir(), host.Name, logger)
	if err != nil {
		t.Fatalf("start labcloud test cloud: %v", err)
	}
	tlsCfg, err := svc.TLSConfig(svc.ServerNames(host.IP.String())...)
	if err != nil {
		t.Fatalf("start labcloud test cloud: %v", err)
	}
	t.Cleanup(svc.StartTLS(ln, tlsCfg).Close)
	return &Cloud{URL: "https://" + host.Name, Hostname: host.Name, Addr: host.Addr(), CAPEM: svc.EST.CAPEM(),
		HubHostname: svc.Hub.Hostname(), IDScope: svc.DPS.IDScope(), Services: svc}
}

// Client is an HTTPS client that trusts the cloud's certificate and, when
// cert is not nil, presents it (DPS X.509 attestation, hub X.509 devices).
// Its idle connections close on t's cleanup.
func (c *Cloud) Client(t TB, cert *tls.Certificate) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.CAPEM)
	cfg := &tls.Config{RootCAs: pool}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	t.Cleanup(cl.CloseIdleConnections)
	return cl
}

// ServerNames are the names the HTTPS certificate carries: the hub host
// name (what DPS assigns and the SDKs verify), the EST base URL's host when
// it differs, and extra (e.g. the listener's IP).
func (s *Services) ServerNames(extra ...string) []string {
	names := []string{s.Hub.Hostname()}
	if h := s.EST.BaseHost(); h != "" && h != names[0] {
		names = append(names, h)
	}
	for _, e := range extra {
		if e != "" && !slices.Contains(names, e) {
			names = append(names, e)
		}
	}
	return names
}

// StartTLS serves s's Handler over HTTPS with tlsCfg on ln, for a test that
// opened the services itself (StartTestCloud does all of it). The caller
// closes the server.
func (s *Services) StartTLS(ln net.Listener, tlsCfg *tls.Config) *httptest.Server {
	ts := httptest.NewUnstartedServer(s.Handler())
	ts.Listener.Close()
	ts.Listener = ln
	ts.TLS = tlsCfg
	ts.StartTLS()
	return ts
}
