// Package labcloud composes edgev2-labcloud's services — the EST CA, DPS
// and IoT Hub — on one HTTPS listener, for the command and for tests.
package labcloud

import (
	"crypto/tls"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"

	"github.com/edgev2/edgev2/internal/labcloud/dps"
	"github.com/edgev2/edgev2/internal/labcloud/est"
	"github.com/edgev2/edgev2/internal/labcloud/hub"
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
// hub/). hostPort is the listener's "host:port": the default hub host name
// (and so DPS's assignedHub), which clients reach with no /etc/hosts edits.
// Configuration mistakes are *est.ConfigError, *dps.ConfigError or
// *hub.ConfigError.
func Open(cfg Config, stateDir, hostPort string, logger *slog.Logger) (*Services, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.EST.BaseURL == "" {
		cfg.EST.BaseURL = "https://" + hostPort
	}
	if cfg.Hub.Hostname == "" {
		cfg.Hub.Hostname = hostPort
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
	URL         string // "https://127.0.0.1:PORT"
	HostPort    string // "127.0.0.1:PORT", the default hub host name
	CAPEM       []byte // trust anchor of the HTTPS certificate (the EST CA)
	HubHostname string // what DPS assigns and hub SAS tokens name
	IDScope     string
	*Services
}

// StartTestCloud runs EST, DPS and the hub in-process over HTTPS on
// 127.0.0.1 with edgev2-labcloud's TLS setup and routing, state in
// t.TempDir(). It stops on t's cleanup.
func StartTestCloud(t TB, cfg Config) *Cloud {
	t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	hostPort := ts.Listener.Addr().String()
	var logger *slog.Logger
	if l, ok := t.(interface{ Logf(string, ...any) }); ok {
		logger = slog.New(slog.NewTextHandler(logfWriter{l}, nil))
	}
	svc, err := Open(cfg, t.TempDir(), hostPort, logger)
	if err != nil {
		ts.Close()
		t.Fatalf("start labcloud test cloud: %v", err)
	}
	tlsCfg, err := svc.TLSConfig("127.0.0.1", "localhost")
	if err != nil {
		ts.Close()
		t.Fatalf("start labcloud test cloud: %v", err)
	}
	ts.Config.Handler = svc.Handler()
	ts.TLS = tlsCfg
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return &Cloud{URL: "https://" + hostPort, HostPort: hostPort, CAPEM: svc.EST.CAPEM(),
		HubHostname: svc.Hub.Hostname(), IDScope: svc.DPS.IDScope(), Services: svc}
}

// logfWriter sends log lines to t.Logf.
type logfWriter struct {
	l interface{ Logf(string, ...any) }
}

func (w logfWriter) Write(p []byte) (int, error) {
	w.l.Logf("labcloud: %s", strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
