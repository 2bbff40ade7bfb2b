package ctrd

import (
	"context"

	"github.com/containerd/containerd/namespaces"

	"github.com/edgev2/edgev2/internal/fault"
)

// ImageDefaults returns an image's Entrypoint and Cmd, which Docker
// semantics combine with a spec's createOptions (Cmd alone keeps the
// image's Entrypoint). fault.NotFound if the image is not present.
func (r *Runtime) ImageDefaults(ctx context.Context, ref string) (entrypoint, cmd []string, err error) {
	ctx = namespaces.WithNamespace(ctx, r.cfg.Namespace)
	img, err := r.image(ctx, ref)
	if err != nil {
		return nil, nil, err
	}
	spec, err := img.Spec(ctx)
	if err != nil {
		return nil, nil, fault.Wrap(fault.Unavailable, err, "read the configuration of image %q: %v", ref, err)
	}
	return spec.Config.Entrypoint, spec.Config.Cmd, nil
}
