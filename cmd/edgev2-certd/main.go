// Command edgev2-certd is the Certificates service (org.edgev2.Certificates1).
package main

import (
	"context"
	"fmt"
	"log/slog"

	godbus "github.com/godbus/dbus/v5"

	"github.com/edgev2/edgev2/certs"
	"github.com/edgev2/edgev2/certs/adapter"
	"github.com/edgev2/edgev2/certs/api"
	certsconfig "github.com/edgev2/edgev2/certs/config"
	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/internal/daemon"
	keys "github.com/edgev2/edgev2/keys/client"
)

func main() {
	daemon.Main("edgev2-certd", "/etc/edgev2/certd.toml", api.BusName, certsconfig.Load, run)
}

func run(cfg *certsconfig.Config, configPath string, log *slog.Logger) int {
	preloaded := map[string]string{}
	for id, uri := range cfg.PreloadedCerts {
		preloaded[id] = certsconfig.FilePath(uri)
	}
	var svc *certs.Service
	var fds bus.FDCloser // no certd method takes a descriptor
	return daemon.Serve(log, daemon.Service{
		BusName:     api.BusName,
		Path:        api.ObjectPath,
		ConnOptions: []godbus.ConnOption{fds.Option()},
		Register: func(ctx context.Context, conn *godbus.Conn, auth *bus.Authorizer, srv *bus.Server) error {
			fds.Attach(conn)
			store, err := certs.OpenStore(cfg.Homedir, preloaded)
			if err != nil {
				return fmt.Errorf("open the certificate store: %w", err)
			}
			svc = certs.NewService(store, keyStore{keys.New(conn).WithSession()}, cfg, certs.RealClock, log)
			svc.RecoverRotation(ctx) // before any call can start another rotation
			adapter.NewBusAPI(ctx, svc, auth, srv, log)
			return nil
		},
		Started: func(ctx context.Context) { svc.Run(ctx) },
	})
}
