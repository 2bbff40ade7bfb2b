package modrt

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/containerd/containerd/oci"

	"github.com/edgev2/edgev2/internal/fault"
)

// Service turns module specs into containers on the runtime, under the
// configured policy.
type Service struct {
	rt     *Runtime
	policy Policy
	log    *slog.Logger
}

// NewService serves rt under the config's policy.
func NewService(rt *Runtime, cfg *Config, log *slog.Logger) *Service {
	return &Service{rt: rt, log: log, policy: Policy{
		ForbiddenBindPrefixes: cfg.Policy.ForbiddenBindPrefixes,
		AllowPrivileged:       cfg.Policy.AllowPrivileged,
	}}
}

// Runtime is the container runtime underneath.
func (s *Service) Runtime() *Runtime { return s.rt }

// Create makes a module from a ModuleSpec and starts it unless told not to.
func (s *Service) Create(ctx context.Context, name string, specJSON []byte, start bool) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	spec, err := ParseSpec(specJSON)
	if err != nil {
		return err
	}
	if spec.Name != "" && spec.Name != name {
		return fault.New(fault.InvalidArgs, "the spec names module %q but it is created as %q", spec.Name, name)
	}
	image, err := spec.ImageRef()
	if err != nil {
		return err
	}
	entrypoint, cmd, err := s.rt.ImageDefaults(ctx, image)
	if err != nil {
		return err
	}
	opts, err := spec.OCIOpts(s.policy, Extra{Hostname: name, ImageEntrypoint: entrypoint, ImageCmd: cmd})
	if err != nil {
		return err
	}
	maxBytes, files, err := spec.LogLimits()
	if err != nil {
		return err
	}
	req := CreateRequest{Name: name, Image: image, Opts: append([]oci.SpecOpts{}, opts...), Labels: spec.Labels(),
		Restart: spec.RestartPolicy, LogMaxBytes: maxBytes, LogFiles: files}
	if err := s.rt.Create(ctx, req); err != nil {
		return err
	}
	s.log.Info("module created", "module", name, "image", image, "restart", spec.RestartPolicy)
	if !start {
		return nil
	}
	if err := s.rt.Start(ctx, name); err != nil {
		// No half-created module: a module that cannot start is removed again.
		if rerr := s.rt.Remove(ctx, name); rerr != nil {
			s.log.Error("remove a module that failed to start", "module", name, "err", rerr)
		}
		return err
	}
	return nil
}

// Logs streams a module's logs in Docker's multiplexed framing.
func (s *Service) Logs(name string, o LogOptions) (io.ReadCloser, error) { return s.rt.Logs(name, o) }

// stopTimeout is the default grace before SIGKILL.
const stopTimeout = 10 * time.Second
