// Command edgev2-modrtd is the Module Runtime (org.edgev2.ModuleRuntime1):
// edge modules as containers under containerd. It runs as root (containerd's
// socket).
package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	godbus "github.com/godbus/dbus/v5"

	cclient "github.com/edgev2/edgev2/certs/client"
	bus "github.com/edgev2/edgev2/dbus"
	iclient "github.com/edgev2/edgev2/identity/client"
	"github.com/edgev2/edgev2/internal/daemon"
	kclient "github.com/edgev2/edgev2/keys/client"
	"github.com/edgev2/edgev2/modrt"
	"github.com/edgev2/edgev2/modrt/adapter"
	rtapi "github.com/edgev2/edgev2/modrt/api"
	rtconfig "github.com/edgev2/edgev2/modrt/config"
	"github.com/edgev2/edgev2/modrt/ctrd"
	"github.com/edgev2/edgev2/modrt/mgmt"
	rtpolicy "github.com/edgev2/edgev2/modrt/policy"
	"github.com/edgev2/edgev2/modrt/workload"
)

func main() {
	daemon.Main("edgev2-modrtd", "/etc/edgev2/modrtd.toml", rtapi.BusName, rtconfig.LoadConfig, run)
}

func run(cfg *rtconfig.Config, configPath string, log *slog.Logger) int {
	var rt *ctrd.Runtime
	var wl *workload.Manager
	var svc *modrt.Service
	var ca *edgeCA
	var watch *identityWatch
	var signer *workload.ModuleSigner
	logsReplier := adapter.NewLogsReplier()
	return daemon.Serve(log, daemon.Service{
		BusName:     rtapi.BusName,
		Path:        rtapi.ObjectPath,
		ConnOptions: []godbus.ConnOption{logsReplier.Option()},
		Register: func(ctx context.Context, conn *godbus.Conn, auth *bus.Authorizer, srv *bus.Server) error {
			var err error
			var roots *x509.CertPool
			if len(cfg.RegistryCAFiles) > 0 {
				if roots, err = x509.SystemCertPool(); err != nil {
					roots = x509.NewCertPool()
				}
				for _, f := range cfg.RegistryCAFiles {
					data, err := os.ReadFile(f)
					if err != nil || !roots.AppendCertsFromPEM(data) {
						return daemon.ConfigError(fmt.Errorf("%s: registry_ca_files: %s holds no PEM certificate (%v)", configPath, f, err))
					}
				}
			}
			network, nerr := modrt.OpenNetwork(cfg.Network, cfg.Namespace)
			if nerr != nil {
				log.Error("the default network is unavailable: modules on it will not start", "network", cfg.Network.Name, "err", nerr)
			}
			pol := rtpolicy.FromConfig(cfg)
			if pol.NoPidsController {
				log.Warn("the kernel's pids cgroup controller is not available here: modules run without a pids limit ([policy] default_pids_limit and createOptions' PidsLimit are not applied, as Docker discards --pids-limit)")
			}
			rt, err = ctrd.OpenRuntime(ctx, ctrd.RuntimeConfig{Address: cfg.Containerd, Namespace: cfg.Namespace,
				StateDir: filepath.Join(cfg.Homedir, "runtime"), Logger: log, RegistryRoots: roots,
				StartCheck: pol.CheckStart, MountCheck: pol.CheckMounted, Confine: modrt.Confine(pol), Network: modrt.RuntimeNetwork(network),
				MaxLogBytes: pol.MaxLogBytes})
			if err != nil {
				return fmt.Errorf("open containerd at %s: %w", cfg.Containerd, err)
			}
			svc = modrt.NewService(rt, cfg, log)
			if filepath.Base(cfg.MgmtSocket) == "mgmt.sock" {
				svc.MgmtDir = filepath.Dir(cfg.MgmtSocket)
			}
			ids := iclient.New(conn)
			cc, kc := cclient.New(conn), kclient.New(conn).WithSession()
			owners := modrt.NewPidOwners(rt)
			ca = newEdgeCA(cc, kc, cfg.EdgeCACert, cfg.EdgeCAKey, time.Duration(cfg.EdgeCALifetimeDays)*24*time.Hour, log)
			signer = workload.NewModuleSigner(signerSource{ids}, log)
			wl = workload.NewManager(filepath.Join(cfg.Homedir, "workload"), workloadBackend{owners: owners, ids: ids, signer: signer, certs: cc,
				trust: cfg.TrustBundle, manifestTrust: cfg.ManifestTrustBundle, encryption: newEncryption(kc, ids, cfg.WorkloadEncryptionKey), ca: ca, names: cfg.Workload, modules: mgmtModules{svc}}, log)
			svc.Identities, svc.Workload = modrt.IdentityEnv{Directory: identityDirectory{ids}}, wl
			watch = &identityWatch{ids: ids, svc: svc, locals: cfg.Modules, record: filepath.Join(cfg.Homedir, "device.json"), log: log}
			svc.Resume(ctx)
			logsReplier.Attach(adapter.NewBusAPI(ctx, svc, auth, srv, log))
			// The management REST API (edgeAgent, tools), on the same model.
			l, err := mgmt.ListenUnix(cfg.MgmtSocket, 0o660)
			if err != nil {
				return fmt.Errorf("management socket %s: %w", cfg.MgmtSocket, err)
			}
			info := mgmt.HostSystemInfo("edgev2 0.1")
			info.CurrentProvisioning = mgmtIdentities{ids}.Provisioning
			api := mgmt.NewServer(mgmtModules{svc}, mgmtIdentities{ids}, info, log)
			api.SetPidResolver(owners.ModuleOf)
			api.SetSupportBundle(supportBundle(svc, configPath))
			go func() {
				if err := api.Serve(ctx, l); err != nil {
					log.Error("management API stopped", "err", err)
				}
			}()
			return nil
		},
		Started: func(ctx context.Context) {
			go ca.Keep(ctx)
			go svc.RunImageGC(ctx, cfg.ImageGC)
			go watch.Run(ctx)
			// Startup (the containerd client, its gRPC connection, the
			// config and policy) leaves a few MiB of garbage behind one GC;
			// the runtime would hand those pages back to the OS only
			// slowly. Give them back now: idle RSS drops by about a third
			// of a MiB (28.9 → 28.5 MiB measured with 0 modules) for one
			// GC at startup. (Not in keyd: it allocates under 0.5 MiB
			// before it idles, so it never collects, and a forced GC there
			// costs more resident memory than it frees.)
			debug.FreeOSMemory()
			if len(cfg.Modules) > 0 {
				svc.KeepLocal(ctx, cfg.Modules, 30*time.Second)
			}
		},
		Stopped: func() {
			if wl != nil {
				wl.CloseAll()
			}
			if signer != nil {
				signer.Close()
			}
			if rt == nil {
				return
			}
			// The system going down: stop the modules now, while the
			// services they use still run (the unit is ordered after them),
			// each with its stop timeout. Any other stop (restart, upgrade,
			// systemctl stop) keeps them running for the next modrtd.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			stopping, err := adapter.SystemStopping(ctx)
			cancel()
			if err != nil {
				log.Debug("cannot ask systemd whether the system is stopping; modules keep running", "err", err)
			}
			if stopping {
				log.Info("the system is shutting down: stopping modules", "timeout", modrt.StopTimeout)
				rt.Shutdown(modrt.StopTimeout)
				return
			}
			rt.Close() // modules keep running: the next modrtd adopts them
		},
	})
}
