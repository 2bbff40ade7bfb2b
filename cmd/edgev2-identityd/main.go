// Command edgev2-identityd is the Identity service (org.edgev2.Identity1).
package main

import (
	"context"
	"log/slog"

	godbus "github.com/godbus/dbus/v5"

	cclient "github.com/edgev2/edgev2/certs/client"
	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/identity"
	"github.com/edgev2/edgev2/identity/adapter"
	idapi "github.com/edgev2/edgev2/identity/api"
	idconfig "github.com/edgev2/edgev2/identity/config"
	"github.com/edgev2/edgev2/internal/daemon"
	kclient "github.com/edgev2/edgev2/keys/client"
)

func main() {
	daemon.Main("edgev2-identityd", "/etc/edgev2/identityd.toml", idapi.BusName, idconfig.LoadConfig, run)
}

func run(cfg *idconfig.Config, configPath string, log *slog.Logger) int {
	var svc *identity.Service
	signerReplier := bus.NewFDReplier()
	signerReplier.TakesNoFDs = true // no identityd method takes one
	return daemon.Serve(log, daemon.Service{
		BusName:     idapi.BusName,
		Path:        idapi.ObjectPath,
		ConnOptions: []godbus.ConnOption{signerReplier.Option()},
		Register: func(ctx context.Context, conn *godbus.Conn, auth *bus.Authorizer, srv *bus.Server) error {
			kc := kclient.New(conn)
			cc := cclient.New(conn)
			svc = identity.NewService(cfg, keysAdapter{kc.WithSession()}, certsAdapter{cc}, log)
			svc.Sessions = kc
			adapter.New(ctx, svc, auth, srv, log).ServeModuleSigner(signerReplier)
			svc.Start(ctx)
			watchRenewals(ctx, cc, svc, log)
			return nil
		},
		Started: func(ctx context.Context) {
			// The state the service started in (an identity served from its
			// cache) was announced before the name was ours, unheard by a
			// watcher that follows the owner (modrtd's): announce it again.
			svc.OnChange()
			svc.Run(ctx)
		},
	})
}

// watchRenewals reprovisions when certd renews the DPS identity certificate.
func watchRenewals(ctx context.Context, certs *cclient.Client, svc *identity.Service, log *slog.Logger) {
	if err := certs.WatchRenewed(ctx, func(id string) { go svc.IdentityCertRenewed(ctx, id) }); err != nil {
		log.Warn("cannot watch certificate renewals", "err", err)
	}
}
