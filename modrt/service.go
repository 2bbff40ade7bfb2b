package modrt

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/atomicfile"
	rtconfig "github.com/edgev2/edgev2/modrt/config"
	"github.com/edgev2/edgev2/modrt/ctrd"
	"github.com/edgev2/edgev2/modrt/logstore"
	"github.com/edgev2/edgev2/modrt/modspec"
	rtpolicy "github.com/edgev2/edgev2/modrt/policy"
)

// Service turns module specs into containers on the runtime, under the
// configured policy.
type Service struct {
	rt       Backend
	policy   rtpolicy.Policy
	log      *slog.Logger
	specsDir string // the specs modules were created with, redacted (no registry passwords)
	// Identities gives modules their IoT Hub identity (IOTEDGE_* env);
	// nil or failing: modules run without one.
	Identities Identities
	// Workload serves each module's workload socket; nil: none.
	Workload WorkloadSockets
	// MgmtDir holds the management socket; it is bound into the agent
	// module (and only it) at /var/run/iotedge-mgmt. Empty: not bound.
	MgmtDir string

	hostsDir              string // the modules' hosts files (hosts.go)
	hostsBase, resolvBase string // the host's /etc/hosts and /etc/resolv.conf
	hostsMu               sync.Mutex
	networkName           string   // the default network's, as NetworkMode names it
	allowHostNetwork      []string // modules the policy lets use the host's network

	specs specCache // parsed specsDir files; edgeAgent polls the list

	// createMu makes a name's case-insensitive check and its creation one
	// step (sameNameButCase).
	createMu sync.Mutex
}

// runtimeBindOptions bind the runtime's own directories into a module:
// read-only and not recursive — nothing is mounted below them, so there is
// nothing for "rro" (Linux 5.12) to make read-only, and modules start on
// older kernels too.
var runtimeBindOptions = []string{"bind", "ro", "rprivate"}

// AgentModule is the module that manages the others (edgeAgent).
const AgentModule = modspec.AgentModule

// Identities makes sure a module has an identity and returns the
// IOTEDGE_* environment that names it.
type Identities interface {
	ModuleEnv(ctx context.Context, module string) (map[string]string, error)
}

// WorkloadSockets serves a workload socket per module.
type WorkloadSockets interface {
	Listen(module string) error
	Close(module string)
	Dir(module string) string
}

// workloadDir is where a module sees its workload socket.
const workloadDir = "/var/run/iotedge"

// mgmtSocketName is the management socket's file name in MgmtDir.
const mgmtSocketName = "mgmt.sock"

// NewService serves rt under the config's policy.
func NewService(rt Backend, cfg *rtconfig.Config, log *slog.Logger) *Service {
	s := &Service{rt: rt, log: log, specsDir: filepath.Join(cfg.Homedir, "specs"),
		hostsDir: filepath.Join(cfg.Homedir, "hosts"), hostsBase: "/etc/hosts", resolvBase: "/etc/resolv.conf", policy: rtpolicy.FromConfig(cfg),
		networkName: cfg.Network.Name, allowHostNetwork: cfg.Policy.AllowHostNetwork,
		specs: specCache{settle: specSettle},
	}
	rt.OnNetworkChange(func() {
		if err := s.refreshHosts(context.Background()); err != nil {
			s.log.Warn("update the modules' hosts files", "err", err)
		}
	})
	return s
}

// Runtime is the container runtime underneath.
func (s *Service) Runtime() Backend { return s.rt }

// Create makes a module from a ModuleSpec and starts it unless told not to.
func (s *Service) Create(ctx context.Context, name string, specJSON []byte, start bool) error {
	if err := modspec.ValidateName(name); err != nil {
		return err
	}
	spec, err := modspec.ParseSpec(specJSON)
	if err != nil {
		return err
	}
	if spec.Name != "" && spec.Name != name {
		return fault.New(fault.InvalidArgs, "the spec names module %q but it is created as %q", spec.Name, name)
	}
	spec.Name = name // the policy's grants name modules
	// Before an identity or a socket is made for it.
	if err := s.checkNameCase(ctx, name); err != nil {
		return err
	}
	image, err := spec.ImageRef()
	if err != nil {
		return err
	}
	entrypoint, cmd, err := s.rt.ImageDefaults(ctx, image)
	if err != nil {
		return err
	}
	extra := rtpolicy.Extra{Hostname: name, ImageEntrypoint: entrypoint, ImageCmd: cmd, Network: s.networkName}
	netMode, err := spec.NetworkMode(s.networkName)
	if err != nil {
		return err
	}
	ports, err := spec.PortMappings()
	if err != nil {
		return err
	}
	var hostExtra []string
	if netMode == modspec.NetModeHost {
		hostExtra = []string{name}
	}
	if err := s.refreshHosts(ctx, hostExtra...); err != nil {
		s.log.Warn("module names will not resolve in modules", "err", err)
	} else if s.hostsDir != "" {
		switch netMode {
		case modspec.NetModeHost:
			extra.HostsFile = s.hostsPath(hostHostsName)
		case modspec.NetModeDefault:
			extra.HostsFile = s.hostsPath(networkHostsName)
			extra.ResolvConf = s.hostsPath(resolvConfName)
		}
	}
	if s.Identities != nil && s.Workload != nil {
		env, err := s.Identities.ModuleEnv(ctx, name)
		if err != nil {
			s.log.Warn("module runs without an IoT Hub identity", "module", name, "err", err)
		} else {
			if err := s.Workload.Listen(name); err != nil {
				return err
			}
			extra.Env = env
			extra.Mounts = []specs.Mount{{Destination: workloadDir, Type: "bind", Source: s.Workload.Dir(name), Options: runtimeBindOptions}}
		}
	}
	if name == AgentModule && s.MgmtDir != "" {
		if extra.Env == nil {
			extra.Env = map[string]string{}
		}
		extra.Env["IOTEDGE_MANAGEMENTURI"] = "unix:///var/run/iotedge-mgmt/" + mgmtSocketName
		extra.Mounts = append(extra.Mounts, specs.Mount{Destination: "/var/run/iotedge-mgmt", Type: "bind", Source: s.MgmtDir, Options: runtimeBindOptions})
	}
	policy := s.policy
	policy.AllowHostNetwork = slices.Contains(s.allowHostNetwork, name)
	opts, err := OCIOpts(spec, policy, extra)
	if err != nil {
		return err
	}
	maxBytes, files, err := spec.LogLimits()
	if err != nil {
		return err
	}
	req := ctrd.CreateRequest{Name: name, Image: image, Opts: append([]oci.SpecOpts{}, opts...), Labels: spec.Labels(),
		Restart: spec.RestartPolicy, LogMaxBytes: maxBytes, LogFiles: files, Network: netMode, Ports: ports}
	if err := s.createUnique(ctx, req); err != nil {
		if s.Workload != nil {
			s.Workload.Close(name)
		}
		return err
	}
	if err := s.saveSpec(name, spec); err != nil {
		s.log.Warn("cannot record the module's spec", "module", name, "err", err)
	}
	s.log.Info("module created", "module", name, "image", image, "restart", spec.RestartPolicy)
	if !start {
		return nil
	}
	if err := s.rt.Start(ctx, name); err != nil {
		// No half-created module: a module that cannot start is removed again.
		if rerr := s.Remove(ctx, name); rerr != nil {
			s.log.Error("remove a module that failed to start", "module", name, "err", rerr)
		}
		return err
	}
	return nil
}

// createUnique creates the module unless another module's name differs
// from its name only in case: a module's name is its host name to the
// other modules (the hosts file, workload server certificates), and host
// names ignore case, so the second would answer for the first.
func (s *Service) createUnique(ctx context.Context, req ctrd.CreateRequest) error {
	s.createMu.Lock()
	defer s.createMu.Unlock()
	if err := s.checkNameCase(ctx, req.Name); err != nil {
		return err
	}
	return s.rt.Create(ctx, req)
}

// checkNameCase refuses name when another module's differs from it only in case.
func (s *Service) checkNameCase(ctx context.Context, name string) error {
	list, err := s.rt.List(ctx)
	if err != nil {
		return err
	}
	for _, st := range list {
		if st.Name != name && strings.EqualFold(st.Name, name) {
			return fault.New(fault.AlreadyExists, "module %q: module %q has the same name but for case, and module names are host names to the other modules, which ignore case", name, st.Name)
		}
	}
	return nil
}

// Remove removes a module and its workload socket.
func (s *Service) Remove(ctx context.Context, name string) error {
	if err := s.rt.Remove(ctx, name); err != nil {
		return err
	}
	if s.Workload != nil {
		s.Workload.Close(name)
	}
	os.Remove(filepath.Join(s.specsDir, name+".json"))
	s.specs.forget(name)
	if err := s.refreshHosts(ctx); err != nil {
		s.log.Warn("update the modules' hosts file", "err", err)
	}
	return nil
}

// Update replaces module name with the one specJSON describes, starting
// it if start (the management API's PUT /modules/{name}). It fails with
// NotFound, changing nothing, when there is no such module; a spec the
// runtime refuses leaves the module removed (remove, then create).
func (s *Service) Update(ctx context.Context, name string, specJSON []byte, start bool) error {
	if _, err := s.rt.Status(ctx, name); err != nil {
		return err
	}
	if err := s.Remove(ctx, name); err != nil {
		return err
	}
	return s.Create(ctx, name, specJSON, start)
}

func (s *Service) saveSpec(name string, spec *modspec.Spec) error {
	s.specs.forget(name)
	if err := os.MkdirAll(s.specsDir, 0o700); err != nil {
		return err
	}
	data, err := json.Marshal(spec.Redacted())
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(s.specsDir, name+".json"), data, 0o600)
}

// Spec returns the (redacted) spec a module was created with; nil if
// unknown. The result is shared: callers must not modify it.
func (s *Service) Spec(name string) *modspec.Spec {
	return s.specs.load(filepath.Join(s.specsDir, name+".json"), name)
}

// Resume gives adopted modules their workload sockets back after a restart.
func (s *Service) Resume(ctx context.Context) {
	if err := s.refreshHosts(ctx); err != nil {
		s.log.Warn("update the modules' hosts file", "err", err)
	}
	if s.Workload == nil {
		return
	}
	sts, err := s.rt.List(ctx)
	if err != nil {
		s.log.Warn("list modules to resume their workload sockets", "err", err)
		return
	}
	for _, st := range sts {
		if err := s.Workload.Listen(st.Name); err != nil {
			s.log.Warn("resume workload socket", "module", st.Name, "err", err)
		}
	}
}

// ResetForNewIdentity is what aziot-edged does when the device is
// reprovisioned to another hub or device id: every module is removed (its
// identity belonged to the old device), and the configured local modules,
// the agent first, are created afresh; the new agent then brings the new
// device's deployment. It returns the modules removed.
func (s *Service) ResetForNewIdentity(ctx context.Context, locals []rtconfig.LocalModule) ([]string, error) {
	sts, err := s.rt.List(ctx)
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, st := range sts {
		if err := s.Remove(ctx, st.Name); err != nil && !fault.Is(err, fault.NotFound) {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, st.Name)
	}
	for _, m := range locals {
		// KeepLocal may have recreated it a moment ago: that is as good.
		if err := s.Create(ctx, m.Name, []byte(m.Spec), true); err != nil && !fault.Is(err, fault.AlreadyExists) {
			errs = append(errs, err)
		}
	}
	s.log.Info("modules reset for a new device identity", "removed", removed, "recreated", len(locals))
	return removed, errors.Join(errs...)
}

// Logs streams a module's logs in Docker's multiplexed framing.
func (s *Service) Logs(name string, o logstore.Options) (io.ReadCloser, error) {
	return s.rt.Logs(name, o)
}

// StopTimeout is the default grace before SIGKILL.
const StopTimeout = 10 * time.Second

// KeepLocal creates the configured local modules (the agent first) that do
// not exist, and checks again every interval until ctx ends: a gateway
// without a cloud agent still runs its modules. Supervision restarts them.
func (s *Service) KeepLocal(ctx context.Context, mods []rtconfig.LocalModule, interval time.Duration) {
	for {
		for _, m := range mods {
			if _, err := s.rt.Status(ctx, m.Name); err == nil {
				continue
			} else if !fault.Is(err, fault.NotFound) {
				continue
			}
			if err := s.Create(ctx, m.Name, []byte(m.Spec), true); err != nil {
				s.log.Error("cannot create a configured module; retrying", "module", m.Name, "in", interval, "err", err)
			} else {
				s.log.Info("configured module created", "module", m.Name)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}
