// Command edgev2-keyd is the Keys service (org.edgev2.Keys1) on the system bus.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/miekg/pkcs11"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/keys"
)

// Exit codes: runtime failures (systemd restarts) differ from bad
// configuration (RestartPreventExitStatus=78 in the unit).
const (
	exitFailure = 1
	exitConfig  = 78 // EX_CONFIG
)

func main() {
	configPath := flag.String("config", "/etc/edgev2/keyd.toml", "configuration `file`")
	logLevel := flag.String("log-level", "info", "log level: debug, info, warn, error")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile to `file` until exit (for benchmarks)")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "edgev2-keyd: --log-level %q: want debug, info, warn or error\n", *logLevel)
		os.Exit(exitConfig)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	code := run(*configPath, log)
	pprof.StopCPUProfile()
	os.Exit(code)
}

func run(configPath string, log *slog.Logger) int {
	cfg, err := keys.LoadConfig(configPath)
	if err != nil {
		log.Error("bad configuration; not starting", "err", err)
		return exitConfig
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	svc, closeAll, code := openService(ctx, cfg, configPath, log)
	if svc == nil {
		return code
	}
	defer closeAll()

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
	srv := bus.NewServer(conn, keys.ObjectPath, log)
	keys.NewBusAPI(ctx, svc, auth, srv, log)
	if err := srv.Export(); err != nil {
		log.Error("cannot export objects", "err", err)
		return exitFailure
	}
	if err := srv.Claim(keys.BusName); err != nil {
		log.Error("cannot claim the bus name", "err", err)
		return exitFailure
	}
	daemon.SdNotify(false, daemon.SdNotifyReady)
	log.Info("serving", "name", keys.BusName, "engine", svc.EngineName())

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

// openService opens the engine and the preloaded keys. A preloaded key that
// cannot be loaded is served as unavailable (with the reason) rather than
// stopping every other key.
func openService(ctx context.Context, cfg *keys.Config, configPath string, log *slog.Logger) (*keys.Service, func(), int) {
	var engine keys.Engine
	var p11 *keys.PKCS11Engine
	var err error
	if cfg.PKCS11BaseSlot != "" {
		p11, err = keys.OpenPKCS11(ctx, keys.PKCS11Config{LibPath: cfg.PKCS11LibPath, BaseSlot: cfg.PKCS11BaseSlot, PoolSize: cfg.PKCS11Sessions, Logger: log})
		if err != nil {
			if isConfigProblem(err) {
				log.Error("bad configuration; not starting", "file", configPath, "key", "pkcs11_base_slot", "err", err)
				return nil, nil, exitConfig
			}
			log.Error("cannot open the PKCS#11 token", "err", err)
			return nil, nil, exitFailure
		}
		engine = p11
	} else {
		if engine, err = keys.OpenFileEngine(cfg.Homedir); err != nil {
			log.Error("cannot open the key store", "err", err)
			return nil, nil, exitFailure
		}
	}
	preloaded := map[string]keys.Handle{}
	failed := map[string]error{}
	for id, uri := range cfg.PreloadedKeys {
		var h keys.Handle
		var err error
		if strings.HasPrefix(uri, "file://") {
			h, err = keys.LoadKeyFile(id, keys.FilePath(uri))
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
	return svc, closeAll, 0
}

// isConfigProblem tells a wrong PIN or a token that is not there from a
// transient failure: restarting cannot fix the first, and retrying a wrong
// PIN would lock the token.
func isConfigProblem(err error) bool {
	var p pkcs11.Error
	if errors.As(err, &p) {
		switch p {
		case pkcs11.CKR_PIN_INCORRECT, pkcs11.CKR_PIN_INVALID, pkcs11.CKR_PIN_LEN_RANGE,
			pkcs11.CKR_PIN_LOCKED, pkcs11.CKR_PIN_EXPIRED, pkcs11.CKR_ARGUMENTS_BAD:
			return true
		}
	}
	msg := err.Error()
	return strings.Contains(msg, "PIN") || strings.Contains(msg, "no token") || strings.Contains(msg, "no slot")
}
