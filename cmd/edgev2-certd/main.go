// Command edgev2-certd is the Certificates service (org.edgev2.Certificates1).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/edgev2/edgev2/certs"
	bus "github.com/edgev2/edgev2/dbus"
	keys "github.com/edgev2/edgev2/keys/client"
)

const (
	exitFailure = 1
	exitConfig  = 78 // EX_CONFIG
)

func main() {
	configPath := flag.String("config", "/etc/edgev2/certd.toml", "configuration `file`")
	logLevel := flag.String("log-level", "info", "log level: debug, info, warn, error")
	flag.Parse()
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "edgev2-certd: --log-level %q: want debug, info, warn or error\n", *logLevel)
		os.Exit(exitConfig)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	os.Exit(run(*configPath, log))
}

func run(configPath string, log *slog.Logger) int {
	cfg, err := certs.LoadConfig(configPath)
	if err != nil {
		log.Error("bad configuration; not starting", "err", err)
		return exitConfig
	}
	preloaded := map[string]string{}
	for id, uri := range cfg.PreloadedCerts {
		preloaded[id] = certs.FilePath(uri)
	}
	store, err := certs.OpenStore(cfg.Homedir, preloaded)
	if err != nil {
		log.Error("cannot open the certificate store", "err", err)
		return exitFailure
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	conn, err := bus.ConnectSystemBus()
	if err != nil {
		log.Error("cannot reach the bus", "err", err)
		return exitFailure
	}
	defer conn.Close()
	auth, err := bus.NewAuthorizer(ctx, conn, log)
	if err != nil {
		log.Error("cannot set up authorization", "err", err)
		return exitFailure
	}
	svc := certs.NewService(store, keyStore{keys.New(conn)}, cfg, certs.RealClock, log)
	srv := bus.NewServer(conn, certs.ObjectPath, log)
	certs.NewBusAPI(ctx, svc, auth, srv, log)
	if err := srv.Export(); err != nil {
		log.Error("cannot export objects", "err", err)
		return exitFailure
	}
	if err := srv.Claim(certs.BusName); err != nil {
		log.Error("cannot claim the bus name", "err", err)
		return exitFailure
	}
	daemon.SdNotify(false, daemon.SdNotifyReady)
	log.Info("serving", "name", certs.BusName, "managed", len(cfg.Issuance))
	go svc.Run(ctx)

	select {
	case <-ctx.Done():
		log.Info("stopping")
		daemon.SdNotify(false, daemon.SdNotifyStopping)
		return 0
	case <-conn.Context().Done():
		log.Error("lost the bus connection; exiting so systemd restarts the service")
		return exitFailure
	}
}
