// Command edgev2-labcloud is the offline stand-in for the cloud side of
// edgev2 (an EST certificate authority, Azure DPS and IoT Hub's identity
// registry), speaking the real wire protocols on loopback for tests, demos and labs.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/edgev2/edgev2/internal/atomicfile"
	"github.com/edgev2/edgev2/internal/labcloud"
	"github.com/edgev2/edgev2/internal/labcloud/hub"
	"github.com/edgev2/edgev2/internal/labcloud/labconfig"
)

// Exit codes: bad configuration differs from runtime failure.
const (
	exitFailure = 1
	exitConfig  = 78 // EX_CONFIG
)

// fileConfig is the --config file: [est], [dps] and [hub] tables.
type fileConfig = labcloud.Config

func main() {
	if len(os.Args) > 1 && os.Args[1] == "revoke" {
		os.Exit(revokeMain(os.Args[2:]))
	}
	state := flag.String("state", "", "state `directory` (EST CA, DPS registrations, hub registry); required")
	configPath := flag.String("config", "", "configuration `file` (TOML with [est], [dps] and [hub] tables); optional")
	listen := flag.String("listen", "127.0.0.1:443", "HTTPS listen `address`")
	hubHostname := flag.String("hub-hostname", "", "the bare host `name` (no port) at which clients reach the listener on port 443: the hub host name DPS assigns, the EST base URL and the HTTPS certificate's name; default \"localhost\" when listening on port 443")
	logLevel := flag.String("log-level", "info", "log level: debug, info, warn, error")
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "edgev2-labcloud: --log-level %q: want debug, info, warn or error\n", *logLevel)
		os.Exit(exitConfig)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if *state == "" {
		fmt.Fprintln(os.Stderr, "edgev2-labcloud: --state DIR is required (the CA lives there)")
		os.Exit(exitConfig)
	}
	os.Exit(run(*state, *configPath, *listen, *hubHostname, log))
}

func run(stateDir, configPath, listen, hostname string, log *slog.Logger) int {
	cfg, err := loadConfig(configPath)
	if err != nil {
		log.Error("bad configuration; not starting", "err", err)
		return exitConfig
	}
	if hostname, err = listenerHostname(listen, hostname); err != nil {
		log.Error("bad configuration; not starting", "err", err)
		return exitConfig
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		log.Error("cannot listen", "address", listen, "err", err)
		return exitFailure
	}
	defer ln.Close()
	addr := ln.Addr().(*net.TCPAddr)
	ip := addr.IP.String()
	if addr.IP.IsUnspecified() {
		ip = "127.0.0.1"
	}
	// Like Azure's endpoints: https://NAME, port 443, no port in any name.
	url := "https://" + hostname

	svc, err := labcloud.Open(cfg, stateDir, hostname, log)
	if err != nil {
		var cfgErr *labconfig.Error
		if errors.As(err, &cfgErr) {
			log.Error("bad configuration; not starting", "file", configPath, "err", err)
			return exitConfig
		}
		log.Error("cannot open the lab cloud state", "err", err)
		return exitFailure
	}
	srv := svc.EST
	tlsCfg, err := svc.TLSConfig(svc.ServerNames(hostname, ip)...)
	if err != nil {
		log.Error("cannot make the HTTPS certificate", "err", err)
		return exitFailure
	}
	// ca.pem is the trust anchor clients use (curl --cacert, est clients).
	if err := atomicfile.WriteFile(filepath.Join(stateDir, "ca.pem"), srv.CAPEM(), 0o644); err != nil {
		log.Error("cannot write ca.pem", "err", err)
		return exitFailure
	}
	// url tells `edgev2-labcloud revoke --state` where the running server is.
	if err := atomicfile.WriteFile(filepath.Join(stateDir, "url"), []byte(url+"\n"), 0o644); err != nil {
		log.Error("cannot write url", "err", err)
		return exitFailure
	}

	hs := &http.Server{
		Handler:           svc.Handler(),
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- hs.ServeTLS(ln, "", "") }()
	fmt.Printf("edgev2-labcloud listening on %s\n", url)
	log.Info("listening", "url", url, "address", ln.Addr().String(), "ca", filepath.Join(stateDir, "ca.pem"),
		"dps_id_scope", svc.DPS.IDScope(), "hub_hostname", svc.Hub.Hostname())

	select {
	case err := <-served:
		log.Error("HTTPS server stopped", "err", err)
		return exitFailure
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutdownCtx); err != nil {
		log.Warn("shutdown", "err", err)
	}
	log.Info("stopped")
	return 0
}

// listenerHostname is the bare name clients use for the listener: the
// --hub-hostname given, else "localhost" on port 443. A name with a port is
// refused: the Azure SDKs put the hub host name whole into the TLS host
// (and DPS's assignedHub never carries one), so a lab hub on another port
// is unreachable to them. Listening elsewhere needs a name that reaches it
// on 443 (a port forward, a proxy).
func listenerHostname(listen, hostname string) (string, error) {
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("--listen %q: %v (fix: use HOST:PORT, e.g. 127.0.0.1:443)", listen, err)
	}
	if hostname != "" {
		if err := hub.CheckHostname(hostname); err != nil {
			return "", fmt.Errorf("--hub-hostname: %v (fix: give a bare name that resolves to the listener, e.g. via /etc/hosts)", err)
		}
		return hostname, nil
	}
	if port != "443" {
		return "", fmt.Errorf("--listen %q: a hub host name carries no port, so clients reach the lab cloud on 443 (fix: listen on port 443, or set --hub-hostname to a name that reaches this listener on 443)", listen)
	}
	return "localhost", nil
}

// loadConfig reads the TOML file strictly; relative bootstrap_ca_files and
// DPS certificate_file paths are taken relative to the file's directory.
// No file: defaults.
func loadConfig(path string) (fileConfig, error) {
	var c fileConfig
	if path == "" {
		return c, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("%s: %w (fix: create the file or leave out --config)", path, err)
	}
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		var strict *toml.StrictMissingError
		if errors.As(err, &strict) && len(strict.Errors) > 0 {
			return c, fmt.Errorf("%s: %s: unknown setting (fix: remove it or check its spelling; see docs/est.md and docs/labcloud.md)", path, strings.Join(strict.Errors[0].Key(), "."))
		}
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			return c, fmt.Errorf("%s: line %d, column %d: %s (fix: correct the TOML)", path, row, col, de.Error())
		}
		return c, fmt.Errorf("%s: %w", path, err)
	}
	for i, f := range c.EST.BootstrapCAFiles {
		if !filepath.IsAbs(f) {
			c.EST.BootstrapCAFiles[i] = filepath.Join(filepath.Dir(path), f)
		}
	}
	for i, e := range c.DPS.Enrollments {
		if e.CertificateFile != "" && !filepath.IsAbs(e.CertificateFile) {
			c.DPS.Enrollments[i].CertificateFile = filepath.Join(filepath.Dir(path), e.CertificateFile)
		}
		if e.EndorsementKeyFile != "" && !filepath.IsAbs(e.EndorsementKeyFile) {
			c.DPS.Enrollments[i].EndorsementKeyFile = filepath.Join(filepath.Dir(path), e.EndorsementKeyFile)
		}
	}
	if err := c.EST.Validate(); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	if err := c.DPS.Validate(); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	if err := c.Hub.Validate(); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}
