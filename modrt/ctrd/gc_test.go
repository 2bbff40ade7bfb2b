package ctrd

import (
	"os"
	"slices"
	"testing"
	"time"

	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/namespaces"
	"github.com/opencontainers/go-digest"

	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/modrt/modspec"
)

const unusedImage = "example.com/edgev2/unused:1"

// importUnused imports a second image, differing from testImage in its
// config (the busybox layer is shared), and returns its manifest digest.
func importUnused(t *testing.T, e *rtEnv) digest.Digest {
	t.Helper()
	f, err := os.Open(testenv.BuildImage(t, unusedImage, testenv.ImageConfig{Cmd: []string{"true"}}))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := e.rt.ImportImage(t.Context(), f); err != nil {
		t.Fatalf("import %s: %v", unusedImage, err)
	}
	imgs, err := e.rt.Images(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range imgs {
		if img.Name == unusedImage {
			return digest.Digest(img.Digest)
		}
	}
	t.Fatalf("%s not listed after import: %+v", unusedImage, imgs)
	return ""
}

func imageNames(t *testing.T, e *rtEnv) []string {
	t.Helper()
	imgs, err := e.rt.Images(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, img := range imgs {
		names = append(names, img.Name)
	}
	return names
}

func hasContent(t *testing.T, e *rtEnv, d digest.Digest) bool {
	t.Helper()
	ctx := namespaces.WithNamespace(t.Context(), e.cfg.Namespace)
	_, err := e.rt.client.ContentStore().Info(ctx, d)
	if err != nil && !errdefs.IsNotFound(err) {
		t.Fatalf("content info %s: %v", d, err)
	}
	return err == nil
}

func TestGCRemovesUnusedImageAndItsContentAndKeepsOneInUse(t *testing.T) {
	e := startRuntime(t)
	unusedDigest := importUnused(t, e)
	e.create(t, "user", modspec.RestartNever, "")
	imgs, err := e.rt.Images(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var usedDigest digest.Digest
	for _, img := range imgs {
		if img.Name == testImage {
			usedDigest = digest.Digest(img.Digest)
		}
	}

	removed, err := e.rt.GCImages(t.Context(), time.Hour)
	if err != nil || len(removed) != 0 {
		t.Fatalf("GC of images younger than an hour: removed %q, %v; want none", removed, err)
	}
	removed, err = e.rt.GCImages(t.Context(), 0)
	if err != nil || !slices.Equal(removed, []string{unusedImage}) {
		t.Fatalf("GC: removed %q, %v; want [%s]", removed, err, unusedImage)
	}
	if names := imageNames(t, e); !slices.Equal(names, []string{testImage}) {
		t.Fatalf("images after GC: %q, want [%s]", names, testImage)
	}
	if hasContent(t, e, unusedDigest) {
		t.Errorf("manifest %s of the removed image is still in the content store", unusedDigest)
	}
	if !hasContent(t, e, usedDigest) {
		t.Errorf("manifest %s of the image in use was collected", usedDigest)
	}
	if err := e.rt.Start(t.Context(), "user"); err != nil {
		t.Fatalf("start module of the kept image: %v", err)
	}
	e.waitFor(t, "user", "running", 10*time.Second, func(s Status) bool { return s.State == StateRunning })
}

func TestGCKeepsRecentlyUsedImageAfterItsModuleIsRemoved(t *testing.T) {
	e := startRuntime(t)
	e.create(t, "user", modspec.RestartNever, "")
	// GC sees the image in use and records it.
	if removed, err := e.rt.GCImages(t.Context(), 0); err != nil || len(removed) != 0 {
		t.Fatalf("GC with the image in use: removed %q, %v; want none", removed, err)
	}
	if err := e.rt.Remove(t.Context(), "user"); err != nil {
		t.Fatal(err)
	}
	if removed, err := e.rt.GCImages(t.Context(), time.Hour); err != nil || len(removed) != 0 {
		t.Fatalf("GC of an image used a moment ago: removed %q, %v; want none", removed, err)
	}
	if removed, err := e.rt.GCImages(t.Context(), 0); err != nil || !slices.Equal(removed, []string{testImage}) {
		t.Fatalf("GC with no age limit: removed %q, %v; want [%s]", removed, err, testImage)
	}
}

func TestCreateRecordsTheImageAsUsed(t *testing.T) {
	e := startRuntime(t)
	e.create(t, "user", modspec.RestartNever, "")
	ctx := namespaces.WithNamespace(t.Context(), e.cfg.Namespace)
	img, err := e.rt.client.ImageService().Get(ctx, testImage)
	if err != nil {
		t.Fatal(err)
	}
	stamp, err := time.Parse(time.RFC3339, img.Labels[labelLastUsed])
	if err != nil {
		t.Fatalf("after Create the image's %s label is %q: %v", labelLastUsed, img.Labels[labelLastUsed], err)
	}
	if d := time.Since(stamp); d < -time.Minute || d > time.Minute {
		t.Fatalf("last-used stamp %v is not the time of Create", stamp)
	}
}
