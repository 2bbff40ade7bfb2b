package modrt

import (
	"context"
	"io"
	"time"

	"github.com/edgev2/edgev2/modrt/ctrd"
)

// Backend runs the modules: containers, their tasks, supervision, images
// and logs. The containerd backend (package ctrd) is the one there is.
type Backend interface {
	Create(ctx context.Context, req CreateRequest) error
	Start(ctx context.Context, name string) error
	Stop(ctx context.Context, name string, timeout time.Duration) error
	Restart(ctx context.Context, name string, timeout time.Duration) error
	Remove(ctx context.Context, name string) error
	Status(ctx context.Context, name string) (Status, error)
	List(ctx context.Context) ([]Status, error)
	Pids(ctx context.Context, name string) ([]uint32, error)
	// OnChange registers f for every state change of a module.
	OnChange(f func(Status))
	Logs(name string, opts LogOptions) (io.ReadCloser, error)

	ImportImage(ctx context.Context, archive io.Reader) ([]string, error)
	Pull(ctx context.Context, ref string, auth *PullAuth, progress func(PullProgress)) (string, error)
	ImageDefaults(ctx context.Context, ref string) (entrypoint, cmd []string, err error)
	GCImages(ctx context.Context, unusedFor time.Duration) ([]string, error)
	Snapshotter() string

	// Network is the default network (nil when none is configured);
	// OnNetworkChange registers f for joins and leaves.
	Network() ctrd.Network
	OnNetworkChange(f func())
}

var _ Backend = (*Runtime)(nil)

// The containerd backend's types, as modrt's callers name them.
type (
	Runtime       = ctrd.Runtime
	RuntimeConfig = ctrd.RuntimeConfig
	State         = ctrd.State
	Status        = ctrd.Status
	RestartPolicy = ctrd.RestartPolicy
	CreateRequest = ctrd.CreateRequest
	PullAuth      = ctrd.PullAuth
	PullProgress  = ctrd.PullProgress
)

// Module states and restart policies (see ctrd).
const (
	StateCreated    = ctrd.StateCreated
	StateRunning    = ctrd.StateRunning
	StateStopped    = ctrd.StateStopped
	StateFailed     = ctrd.StateFailed
	StateRestarting = ctrd.StateRestarting
	StateRemoved    = ctrd.StateRemoved

	RestartNever     = ctrd.RestartNever
	RestartOnFailure = ctrd.RestartOnFailure
	RestartAlways    = ctrd.RestartAlways
)

// OpenRuntime connects to containerd (see ctrd.OpenRuntime).
func OpenRuntime(ctx context.Context, cfg RuntimeConfig) (*Runtime, error) {
	return ctrd.OpenRuntime(ctx, cfg)
}

// RuntimeNetwork is n as the runtime's default network; a nil n stays a
// nil interface (no default network).
func RuntimeNetwork(n *Network) ctrd.Network {
	if n == nil {
		return nil
	}
	return n
}
