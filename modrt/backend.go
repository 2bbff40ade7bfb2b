package modrt

import (
	"context"
	"io"
	"time"

	"github.com/edgev2/edgev2/modrt/ctrd"
	"github.com/edgev2/edgev2/modrt/logstore"
)

// Backend runs the modules: containers, their tasks, supervision, images
// and logs. The containerd backend (package ctrd) is the one there is.
type Backend interface {
	Create(ctx context.Context, req ctrd.CreateRequest) error
	Start(ctx context.Context, name string) error
	Stop(ctx context.Context, name string, timeout time.Duration) error
	Restart(ctx context.Context, name string, timeout time.Duration) error
	Remove(ctx context.Context, name string) error
	Status(ctx context.Context, name string) (ctrd.Status, error)
	List(ctx context.Context) ([]ctrd.Status, error)
	Pids(ctx context.Context, name string) ([]uint32, error)
	// OnChange registers f for every state change of a module.
	OnChange(f func(ctrd.Status))
	Logs(name string, opts logstore.Options) (io.ReadCloser, error)

	ImportImage(ctx context.Context, archive io.Reader) ([]string, error)
	Pull(ctx context.Context, ref string, auth *ctrd.PullAuth, progress func(ctrd.PullProgress)) (string, error)
	ImageDefaults(ctx context.Context, ref string) (entrypoint, cmd []string, err error)
	GCImages(ctx context.Context, unusedFor time.Duration) ([]string, error)
	Snapshotter() string

	// Network is the default network (nil when none is configured);
	// OnNetworkChange registers f for joins and leaves.
	Network() ctrd.Network
	OnNetworkChange(f func())
}

var _ Backend = (*ctrd.Runtime)(nil)

// RuntimeNetwork is n as the runtime's default network; a nil n stays a
// nil interface (no default network).
func RuntimeNetwork(n *Network) ctrd.Network {
	if n == nil {
		return nil
	}
	return n
}
