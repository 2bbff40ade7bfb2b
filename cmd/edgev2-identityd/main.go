// Command edgev2-identityd is the Identity service (org.edgev2.Identity1).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/coreos/go-systemd/v22/daemon"
	godbus "github.com/godbus/dbus/v5"

	"github.com/edgev2/edgev2/certs"
	cclient "github.com/edgev2/edgev2/certs/client"
	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/identity"
	kclient "github.com/edgev2/edgev2/keys/client"
)

const (
	exitFailure = 1
	exitConfig  = 78 // EX_CONFIG
)

func main() {
	configPath := flag.String("config", "/etc/edgev2/identityd.toml", "configuration `file`")
	logLevel := flag.String("log-level", "info", "log level: debug, info, warn, error")
	flag.Parse()
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "edgev2-identityd: --log-level %q: want debug, info, warn or error\n", *logLevel)
		os.Exit(exitConfig)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	os.Exit(run(*configPath, log))
}

func run(configPath string, log *slog.Logger) int {
	cfg, err := identity.LoadConfig(configPath)
	if err != nil {
		log.Error("bad configuration; not starting", "err", err)
		return exitConfig
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
	svc := identity.NewService(cfg, keysAdapter{kclient.New(conn)}, certsAdapter{cclient.New(conn)}, log)
	srv := bus.NewServer(conn, identity.ObjectPath, log)
	identity.NewBusAPI(ctx, svc, auth, srv, log)
	svc.Start(ctx)
	if err := srv.Export(); err != nil {
		log.Error("cannot export objects", "err", err)
		return exitFailure
	}
	if err := srv.Claim(identity.BusName); err != nil {
		log.Error("cannot claim the bus name", "err", err)
		return exitFailure
	}
	watchRenewals(ctx, conn, svc, log)
	daemon.SdNotify(false, daemon.SdNotifyReady)
	st, _ := svc.State()
	log.Info("serving", "name", identity.BusName, "source", cfg.Provisioning.Source, "state", st)
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

// watchRenewals reprovisions when certd renews the DPS identity certificate.
func watchRenewals(ctx context.Context, conn *godbus.Conn, svc *identity.Service, log *slog.Logger) {
	if err := conn.AddMatchSignal(godbus.WithMatchSender(certs.BusName), godbus.WithMatchInterface(certs.CertInterface), godbus.WithMatchMember("Renewed")); err != nil {
		log.Warn("cannot watch certificate renewals", "err", err)
		return
	}
	ch := make(chan *godbus.Signal, 16)
	conn.Signal(ch)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case sig := <-ch:
				if sig == nil || sig.Name != certs.CertInterface+".Renewed" {
					continue
				}
				// Signals sent straight to us bypass match rules: only certd may say this.
				var owner string
				if conn.BusObject().Call("org.freedesktop.DBus.GetNameOwner", 0, certs.BusName).Store(&owner) != nil || owner != sig.Sender {
					continue
				}
				elem, ok := strings.CutPrefix(string(sig.Path), string(certs.ObjectPath)+"/certs/")
				if !ok {
					continue
				}
				if id, ok := bus.UnescapePathElement(elem); ok {
					go svc.IdentityCertRenewed(ctx, id)
				}
			}
		}
	}()
}
