package testenv

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// busyboxPath is Debian's busybox-static: one static binary is a whole
// userland for test images.
const busyboxPath = "/usr/bin/busybox"

// busyboxApplets get a symlink in the image's /bin.
var busyboxApplets = []string{
	"sh", "echo", "sleep", "cat", "wget", "nc", "ls", "env", "id", "printf",
	"head", "yes", "true", "false", "kill", "ps", "seq", "test", "touch", "mkdir", "rm", "grep",
}

// ImageConfig is what goes into the image's config (the OCI image config's
// "config" object).
type ImageConfig struct {
	Entrypoint []string
	Cmd        []string
	Env        []string // default: PATH=/bin
	WorkingDir string
	User       string
	// Files are extra executables put in the image: image path → host file.
	Files map[string]string
}

// BuildImage writes an OCI image archive (as `ctr images export` or
// `docker save` of an OCI image would) of a busybox root filesystem with
// cfg, named ref (e.g. "example.com/test/busybox:1"), and returns its
// path. The index carries both the OCI ref-name annotation (the tag) and
// containerd's io.containerd.image.name (the full ref).
func BuildImage(t TB, ref string, cfg ImageConfig) string {
	t.Helper()
	if _, err := os.Stat(busyboxPath); err != nil {
		Missing(t, "busybox-static", busyboxPath+" not found (Debian package busybox-static)")
		return ""
	}
	bb, err := os.ReadFile(busyboxPath)
	if err != nil {
		t.Fatalf("read %s: %v", busyboxPath, err)
	}
	layer := busyboxLayer(t, bb, cfg.Files)
	layerDigest := digestOf(layer)

	env := cfg.Env
	if len(env) == 0 {
		env = []string{"PATH=/bin"}
	}
	created := time.Now().UTC()
	config := map[string]any{
		"created":      created.Format(time.RFC3339Nano),
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"config": map[string]any{
			"Entrypoint": cfg.Entrypoint,
			"Cmd":        cfg.Cmd,
			"Env":        env,
			"WorkingDir": cfg.WorkingDir,
			"User":       cfg.User,
		},
		"rootfs":  map[string]any{"type": "layers", "diff_ids": []string{layerDigest}},
		"history": []map[string]any{{"created": created.Format(time.RFC3339Nano), "created_by": "testenv.BuildImage"}},
	}
	configJSON := mustJSON(t, config)
	manifest := map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{
			"mediaType": "application/vnd.oci.image.config.v1+json",
			"digest":    digestOf(configJSON),
			"size":      len(configJSON),
		},
		"layers": []map[string]any{{
			"mediaType": "application/vnd.oci.image.layer.v1.tar",
			"digest":    layerDigest,
			"size":      len(layer),
		}},
	}
	manifestJSON := mustJSON(t, manifest)
	index := map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests": []map[string]any{{
			"mediaType": "application/vnd.oci.image.manifest.v1+json",
			"digest":    digestOf(manifestJSON),
			"size":      len(manifestJSON),
			"platform":  map[string]any{"architecture": runtime.GOARCH, "os": "linux"},
			"annotations": map[string]string{
				"org.opencontainers.image.ref.name": refTag(ref),
				"io.containerd.image.name":          ref,
			},
		}},
	}

	var archive bytes.Buffer
	tw := tar.NewWriter(&archive)
	addFile := func(name string, data []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg, ModTime: created}); err != nil {
			t.Fatalf("write image archive: %v", err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatalf("write image archive: %v", err)
		}
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Name: d, Mode: 0o755, Typeflag: tar.TypeDir, ModTime: created}); err != nil {
			t.Fatalf("write image archive: %v", err)
		}
	}
	addFile("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	addFile("index.json", mustJSON(t, index))
	for _, blob := range [][]byte{configJSON, manifestJSON, layer} {
		addFile("blobs/sha256/"+strings.TrimPrefix(digestOf(blob), "sha256:"), blob)
	}
	if err := tw.Close(); err != nil {
		t.Fatalf("write image archive: %v", err)
	}
	path := filepath.Join(t.TempDir(), "image.tar")
	if err := os.WriteFile(path, archive.Bytes(), 0o644); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
	return path
}

// ImportImage imports an image archive into namespace of c with
// `ctr images import` (which also unpacks it).
func ImportImage(t TB, c *Containerd, namespace, archive string) {
	t.Helper()
	c.Ctr(t, "-n", namespace, "images", "import", archive)
}

// busyboxLayer is an uncompressed layer tar: /bin/busybox, its applet
// links, an /etc with root and nobody, and the usual empty directories.
func busyboxLayer(t TB, busybox []byte, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mod := time.Unix(0, 0)
	write := func(h *tar.Header, data []byte) {
		h.ModTime = mod
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("write layer: %v", err)
		}
		if data != nil {
			if _, err := tw.Write(data); err != nil {
				t.Fatalf("write layer: %v", err)
			}
		}
	}
	for _, d := range []string{"bin", "etc", "tmp", "root", "proc", "sys", "dev", "run", "var", "home"} {
		mode := int64(0o755)
		if d == "tmp" {
			mode = 0o1777
		}
		write(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: mode}, nil)
	}
	write(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(busybox))}, busybox)
	for _, a := range busyboxApplets {
		write(&tar.Header{Name: "bin/" + a, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}, nil)
	}
	passwd := []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
	group := []byte("root:x:0:\nnogroup:x:65534:\n")
	write(&tar.Header{Name: "etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(passwd))}, passwd)
	write(&tar.Header{Name: "etc/group", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(group))}, group)
	for dst, src := range files {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatalf("image file %s: %v", src, err)
		}
		write(&tar.Header{Name: strings.TrimPrefix(dst, "/"), Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(data))}, data)
	}
	if err := tw.Close(); err != nil {
		t.Fatalf("write layer: %v", err)
	}
	return buf.Bytes()
}

// refTag is the tag of ref ("latest" if it has none), the value of the
// OCI ref-name annotation.
func refTag(ref string) string {
	name := ref
	if i := strings.LastIndex(name, "@"); i >= 0 {
		name = name[:i]
	}
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		return name[i+1:]
	}
	return "latest"
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func mustJSON(t TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return b
}
