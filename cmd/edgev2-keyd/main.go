// Command edgev2-keyd is the Keys service (org.edgev2.Keys1) on the system bus.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/internal/credential"
	"github.com/edgev2/edgev2/internal/daemon"
	"github.com/edgev2/edgev2/keys"
	"github.com/edgev2/edgev2/keys/adapter"
	"github.com/edgev2/edgev2/keys/api"
	keysconfig "github.com/edgev2/edgev2/keys/config"
)

func main() {
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile to `file` until exit (for benchmarks)")
	configPath, log := daemon.Flags("edgev2-keyd", "/etc/edgev2/keyd.toml")
	if *cpuProfile != "" {
		if f, err := os.Create(*cpuProfile); err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}
	code := run(configPath, log)
	pprof.StopCPUProfile()
	os.Exit(code)
}

func run(configPath string, log *slog.Logger) int {
	if daemon.ConfigMissing(configPath) {
		// Before `edgectl config apply`: own the name and say so to every
		// caller rather than exit (D-Bus activation would wait 25 s).
		return daemon.ServeNotConfigured(log, "edgev2-keyd", api.BusName, configPath)
	}
	cfg, err := keysconfig.Load(configPath)
	if err != nil {
		log.Error("bad configuration; not starting", "err", err)
		return daemon.ExitConfig
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

// openService opens the engine and the preloaded keys. A preloaded key that
// cannot be loaded is served as unavailable (with the reason) rather than
// stopping every other key.
func openService(ctx context.Context, cfg *keysconfig.Config, configPath string, log *slog.Logger) (*keys.Service, func(), error) {
	var engine keys.Engine
	var p11 *keys.PKCS11Engine
	var err error
	if cfg.PKCS11BaseSlot != "" {
		p11, err = keys.OpenPKCS11(ctx, keys.PKCS11Config{LibPath: cfg.PKCS11LibPath, BaseSlot: cfg.PKCS11BaseSlot, PoolSize: cfg.PKCS11Sessions, Logger: log})
		if err != nil {
			if keys.IsConfigProblem(err) {
				return nil, nil, daemon.ConfigError(fmt.Errorf("%s: pkcs11_base_slot: %w", configPath, err))
			}
			return nil, nil, fmt.Errorf("open the PKCS#11 token: %w", err)
		}
		engine = p11
	} else {
		if engine, err = keys.OpenFileEngine(cfg.Homedir); err != nil {
			return nil, nil, fmt.Errorf("open the key store: %w", err)
		}
	}
	preloaded := map[string]keys.Handle{}
	failed := map[string]error{}
	for id, uri := range cfg.PreloadedKeys {
		var h keys.Handle
		var err error
		if strings.HasPrefix(uri, "file://") {
			h, err = keys.LoadKeyFile(id, keysconfig.FilePath(uri))
		} else if name, ok, _ := credential.Ref(uri); ok {
			h, err = keys.LoadKeyCredential(id, name)
		} else {
			if p11 == nil {
				if p11, err = keys.OpenPKCS11Module(ctx, cfg.PKCS11LibPath, log); err != nil {
					failed[id] = err
					continue
				}
			}
			h, err = p11.OpenURI(ctx, uri)
		}
		if err != nil {
			failed[id] = err
			continue
		}
		preloaded[id] = keys.Preloaded(id, h)
	}
	svc := keys.NewService(engine, preloaded, log)
	for id, err := range failed {
		log.Error("preloaded key unavailable", "key_id", id, "err", err)
		svc.MarkUnavailable(id, err)
	}
	closeAll := func() {
		svc.Close()
		if p11 != nil && keys.Engine(p11) != engine { // opened only for preloaded keys
			p11.Close()
		}
	}
	return svc, closeAll, nil
}
