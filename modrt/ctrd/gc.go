package ctrd

import (
	"context"
	"sort"
	"time"

	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/images"
	"github.com/containerd/containerd/namespaces"

	"github.com/edgev2/edgev2/fault"
)

// labelLastUsed, on an image, is when GCImages last saw a container use
// it or Create made a container of it (RFC 3339); containerd keeps no use time.
const labelLastUsed = labelPrefix + "last-used"

// GCImages removes the images of the runtime's namespace that no
// container uses and that nothing used, pulled or imported for at least
// unusedFor, and has containerd collect their content and snapshots. It
// returns the names removed. An image counts as used until the first
// GCImages run after its last container is gone, so run it periodically.
func (r *Runtime) GCImages(ctx context.Context, unusedFor time.Duration) ([]string, error) {
	if unusedFor < 0 {
		return nil, fault.New(fault.InvalidArgs, "image GC: negative age %v", unusedFor)
	}
	ctx = namespaces.WithNamespace(ctx, r.cfg.Namespace)
	// Create looks an image up and then makes a container of it; an
	// image deleted in between would leave it without a root filesystem.
	r.createMu.Lock()
	defer r.createMu.Unlock()

	cs, err := r.client.ContainerService().List(ctx)
	if err != nil {
		return nil, classify(err, "image GC: list containers")
	}
	inUse := map[string]bool{}
	for _, c := range cs {
		inUse[c.Image] = true
	}
	store := r.client.ImageService()
	imgs, err := store.List(ctx)
	if err != nil {
		return nil, classify(err, "image GC: list images")
	}
	now := r.cfg.Now()
	var removed []string
	for _, img := range imgs {
		if inUse[img.Name] {
			r.stampUsed(ctx, img, now)
			continue
		}
		if now.Sub(lastUsed(img)) < unusedFor {
			continue
		}
		// Synchronous: the content and snapshots are gone when it returns.
		if err := store.Delete(ctx, img.Name, images.SynchronousDelete()); err != nil {
			if errdefs.IsNotFound(err) {
				continue
			}
			return removed, classify(err, "image GC: delete image %s", img.Name)
		}
		r.log.Info("image removed by GC", "image", img.Name, "digest", img.Target.Digest.String(), "last_used", lastUsed(img))
		removed = append(removed, img.Name)
	}
	sort.Strings(removed)
	return removed, nil
}

// stampUsed records on img that a container used it at now.
func (r *Runtime) stampUsed(ctx context.Context, img images.Image, now time.Time) {
	if img.Labels == nil {
		img.Labels = map[string]string{}
	}
	img.Labels[labelLastUsed] = now.UTC().Format(time.RFC3339)
	if _, err := r.client.ImageService().Update(ctx, img, "labels."+labelLastUsed); err != nil && !errdefs.IsNotFound(err) {
		r.log.Warn("record use of image", "image", img.Name, "err", err)
	}
}

// lastUsed is when img was last pulled, imported or seen in use.
func lastUsed(img images.Image) time.Time {
	t := img.UpdatedAt
	if t.Before(img.CreatedAt) {
		t = img.CreatedAt
	}
	if u, err := time.Parse(time.RFC3339, img.Labels[labelLastUsed]); err == nil && u.After(t) {
		t = u
	}
	return t
}
