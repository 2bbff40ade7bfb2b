// Package daemon is the life cycle every edgev2 D-Bus service shares: flags,
// connect, export every object, then claim the name, notify systemd, serve
// until SIGTERM, and exit non-zero when the bus goes away.
package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/coreos/go-systemd/v22/daemon"
	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
)

// Exit codes: runtime failures (systemd restarts the service) differ from
// bad configuration (RestartPreventExitStatus=78 in the units).
const (
	ExitFailure = 1
	ExitConfig  = 78 // EX_CONFIG
)

// Flags parses --config and --log-level (and any flags the caller defined
// before) and returns the config path and a logger. A bad level exits 78.
func Flags(name, defaultConfig string) (configPath string, log *slog.Logger) {
	cfg := flag.String("config", defaultConfig, "configuration `file`")
	logLevel := flag.String("log-level", "info", "log level: debug, info, warn, error")
	flag.Parse()
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "%s: --log-level %q: want debug, info, warn or error\n", name, *logLevel)
		os.Exit(ExitConfig)
	}
	return *cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// configError marks a Register failure that restarting cannot fix.
type configError struct{ error }

func (e configError) Unwrap() error { return e.error }

// ConfigError wraps err so Serve exits with ExitConfig.
func ConfigError(err error) error { return configError{err} }

// Service is one daemon's wiring.
type Service struct {
	BusName string
	// Register puts the service's objects on srv. It runs once the bus
	// connection and the polkit client exist, before Export and Claim.
	Register func(ctx context.Context, conn *godbus.Conn, auth *bus.Authorizer, srv *bus.Server) error
	// Path is the root object path.
	Path godbus.ObjectPath
	// Started runs in the background once the name is claimed (renewal
	// schedules, provisioning loops).
	Started func(ctx context.Context)
	// Stopped runs after serving ends (close engines).
	Stopped func()
	// ConnOptions are given to godbus when the bus connection is made
	// (keyd's fast path intercepts its hot calls there).
	ConnOptions []godbus.ConnOption
}

// Serve runs the daemon and returns its exit code.
func Serve(log *slog.Logger, s Service) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if s.Stopped != nil {
		defer s.Stopped()
	}
	conn, err := bus.ConnectSystemBus(s.ConnOptions...)
	if err != nil {
		log.Error("cannot reach the bus", "err", err)
		return ExitFailure
	}
	defer conn.Close()
	auth, err := bus.NewAuthorizer(ctx, conn, log)
	if err != nil {
		log.Error("cannot set up authorization", "err", err)
		return ExitFailure
	}
	srv := bus.NewServer(conn, s.Path, log)
	if err := s.Register(ctx, conn, auth, srv); err != nil {
		var ce configError
		if errors.As(err, &ce) {
			log.Error("bad configuration; not starting", "err", err)
			return ExitConfig
		}
		log.Error("cannot start", "err", err)
		return ExitFailure
	}
	if err := srv.Export(); err != nil {
		log.Error("cannot export objects", "err", err)
		return ExitFailure
	}
	if err := srv.Claim(s.BusName); err != nil {
		log.Error("cannot claim the bus name", "err", err)
		return ExitFailure
	}
	daemon.SdNotify(false, daemon.SdNotifyReady)
	log.Info("serving", "name", s.BusName)
	if s.Started != nil {
		go s.Started(ctx)
	}
	select {
	case <-ctx.Done():
		log.Info("stopping")
		daemon.SdNotify(false, daemon.SdNotifyStopping)
		return 0
	case <-conn.Context().Done():
		log.Error("lost the bus connection; exiting so systemd restarts the service")
		return ExitFailure
	}
}
