// Command edgev2-keyd is the Keys service (org.edgev2.Keys1) on the system bus.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/internal/daemon"
	"github.com/edgev2/edgev2/keys"
	"github.com/edgev2/edgev2/keys/adapter"
	"github.com/edgev2/edgev2/keys/api"
	keysconfig "github.com/edgev2/edgev2/keys/config"
)

func main() {
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile to `file` until exit (for benchmarks; needs a keyd built with -tags pprof)")
	configPath, log := daemon.Flags("edgev2-keyd", "/etc/edgev2/keyd.toml")
	stopProfile := startCPUProfile(*cpuProfile, log)
	code := run(configPath, log)
	stopProfile()
	os.Exit(code)
}

func run(configPath string, log *slog.Logger) int {
	cfg, exit, ok := daemon.LoadConfig(log, "edgev2-keyd", api.BusName, configPath, keysconfig.Load)
	if !ok {
		return exit
	}
	var closeAll func()
	fast := adapter.NewFastPath()
	return daemon.Serve(log, daemon.Service{
		BusName:     api.BusName,
		Path:        api.ObjectPath,
		ConnOptions: []godbus.ConnOption{fast.Option()},
		Register: func(ctx context.Context, conn *godbus.Conn, auth *bus.Authorizer, srv *bus.Server) error {
			svc, closer, err := openService(ctx, cfg, configPath, log)
			if err != nil {
				return err
			}
			closeAll = closer
			fast.Attach(adapter.New(ctx, svc, auth, srv, log))
			return nil
		},
		Stopped: func() {
			if closeAll != nil {
				closeAll()
			}
		},
	})
}

// openService opens the Keys service cfg describes; a configuration
// mistake (a PIN the token refuses, a URI that picks no token) is a config
// error (exit 78) naming the file.
func openService(ctx context.Context, cfg *keysconfig.Config, configPath string, log *slog.Logger) (*keys.Service, func(), error) {
	svc, closeAll, err := keys.Open(ctx, cfg, log)
	if err != nil && keys.IsConfigProblem(err) {
		return nil, nil, daemon.ConfigError(fmt.Errorf("%s: %w", configPath, err))
	}
	return svc, closeAll, err
}
