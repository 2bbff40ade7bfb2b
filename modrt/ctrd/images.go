package ctrd

import (
	"context"
	"io"
	"sort"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"

	"github.com/edgev2/edgev2/fault"
)

// Image is an image in the runtime's namespace.
type Image struct {
	Name      string
	Digest    string // of the manifest or index
	CreatedAt time.Time
}

// ImportImage imports an OCI or Docker image archive, unpacks its images
// for the runtime's snapshotter and returns their names.
func (r *Runtime) ImportImage(ctx context.Context, archive io.Reader) ([]string, error) {
	ctx = namespaces.WithNamespace(ctx, r.cfg.Namespace)
	imgs, err := r.client.Import(ctx, archive)
	if err != nil {
		if isUnavailable(err) {
			return nil, classify(err, "import image")
		}
		return nil, fault.Wrap(fault.InvalidArgs, err, "import image archive: %v", err)
	}
	names := make([]string, 0, len(imgs))
	for _, img := range imgs {
		if err := containerd.NewImage(r.client, img).Unpack(ctx, r.snapshotter); err != nil {
			return nil, classify(err, "unpack image %s", img.Name)
		}
		names = append(names, img.Name)
	}
	if len(names) == 0 {
		return nil, fault.New(fault.InvalidArgs, "the image archive names no image (no io.containerd.image.name annotation or RepoTags)")
	}
	return names, nil
}

// Images lists the images of the runtime's namespace, by name.
func (r *Runtime) Images(ctx context.Context) ([]Image, error) {
	ctx = namespaces.WithNamespace(ctx, r.cfg.Namespace)
	imgs, err := r.client.ImageService().List(ctx)
	if err != nil {
		return nil, classify(err, "list images")
	}
	out := make([]Image, 0, len(imgs))
	for _, img := range imgs {
		out = append(out, Image{Name: img.Name, Digest: img.Target.Digest.String(), CreatedAt: img.CreatedAt})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

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
