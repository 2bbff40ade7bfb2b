package ctrd

import (
	"context"
	"crypto/x509"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgev2/edgev2/modrt/logstore"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/modrt/modspec"
)

const (
	pullUser     = "edge"
	pullPassword = "pull-S3cret-9f2"
	pullLocalRef = "example.com/edgev2/pullme:1"
)

// pullEnv is a runtime with no image and a registry holding one
// (pushed from a scratch namespace of the same containerd, then removed
// there, so a pull downloads every blob).
type pullEnv struct {
	*rtEnv
	reg    *testenv.Registry
	remote string // the image in the registry; its command exits 0
}

func startPullEnv(t *testing.T) *pullEnv {
	t.Helper()
	c := testenv.StartContainerd(t)
	reg := testenv.StartRegistry(t, pullUser, pullPassword)
	e := openRuntime(t, c)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(reg.CAPEM) {
		t.Fatal("registry CA has no certificate")
	}
	e.rt.SetRegistryTrust(pool)

	scratch := e.cfg.Namespace + "-push"
	testenv.ImportImage(t, c, scratch, testenv.BuildImage(t, pullLocalRef, testenv.ImageConfig{Cmd: []string{"sh", "-c", "echo pulled"}}))
	remote := reg.Push(t, c, scratch, pullLocalRef)
	c.Ctr(t, "-n", scratch, "images", "rm", "--sync", pullLocalRef)
	if out := c.Ctr(t, "-n", scratch, "content", "ls", "-q"); strings.TrimSpace(out) != "" {
		t.Fatalf("content left after removing the pushed image:\n%s", out)
	}
	return &pullEnv{rtEnv: e, reg: reg, remote: remote}
}

func (e *pullEnv) auth() *PullAuth { return &PullAuth{Username: pullUser, Password: pullPassword} }

func TestPullWithCredentialsMakesARunnableImageAndReportsProgress(t *testing.T) {
	e := startPullEnv(t)
	var mu sync.Mutex
	var reports []PullProgress
	dgst, err := e.rt.Pull(t.Context(), e.remote, e.auth(), func(p PullProgress) {
		mu.Lock()
		reports = append(reports, p)
		mu.Unlock()
	})
	if err != nil {
		t.Fatalf("pull %s: %v", e.remote, err)
	}
	imgs, err := e.rt.Images(t.Context())
	if err != nil || len(imgs) != 1 || imgs[0].Name != e.remote || imgs[0].Digest != dgst {
		t.Fatalf("images after pull: %+v, %v; want %s at %s", imgs, err, e.remote, dgst)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(reports) < 3 || reports[0].Status != PullResolving {
		t.Fatalf("progress reports %+v: want resolving, downloads, done", reports)
	}
	last := reports[len(reports)-1]
	// The layer is the busybox binary: the pull must have downloaded it.
	if last.Status != PullDone || last.Done != last.Total || last.Total < 500<<10 {
		t.Fatalf("last progress report %+v: want done with Done == Total >= 500 KiB", last)
	}
	var prev int64
	doneValues := map[int64]bool{}
	downloaded := map[string]bool{}
	for _, p := range reports {
		if p.Ref != e.remote || p.Done < prev || p.Done > p.Total && p.Total > 0 {
			t.Fatalf("progress report %+v after Done=%d: want Ref %s, Done growing and <= Total", p, prev, e.remote)
		}
		prev = p.Done
		doneValues[p.Done] = true
		if p.Status == PullDownloaded {
			downloaded[p.Layer] = true
		}
	}
	if len(doneValues) < 3 {
		t.Errorf("Done took %d values over %d reports; want it to grow as blobs arrive", len(doneValues), len(reports))
	}
	if !downloaded[dgst] || len(downloaded) != 3 {
		t.Errorf("downloaded blobs %v: want the manifest %s, its config and its layer", downloaded, dgst)
	}

	if err := e.rt.Create(t.Context(), CreateRequest{Name: "pulled", Image: e.remote, Restart: modspec.RestartNever}); err != nil {
		t.Fatalf("create from pulled image: %v", err)
	}
	if err := e.rt.Start(t.Context(), "pulled"); err != nil {
		t.Fatalf("start: %v", err)
	}
	st := e.waitFor(t, "pulled", "exit", 10*time.Second, func(s Status) bool { return s.State == StateStopped || s.State == StateFailed })
	if st.State != StateStopped || st.ExitCode != 0 {
		t.Fatalf("module of the pulled image: %+v, want stopped with exit 0", st)
	}
	if stdout, _, _ := logText(t, e.rt, "pulled", logstore.Options{Tail: -1}); stdout != "pulled\n" {
		t.Errorf("module output %q, want %q", stdout, "pulled\n")
	}
}

func TestPullWithWrongPasswordIsNotAuthorizedAndKeepsThePasswordOut(t *testing.T) {
	e := startPullEnv(t)
	const wrong = "wrong-Pa55word-77"
	_, err := e.rt.Pull(t.Context(), e.remote, &PullAuth{Username: pullUser, Password: wrong}, nil)
	if !fault.Is(err, fault.NotAuthorized) {
		t.Fatalf("pull with a wrong password: %v (kind %v), want NotAuthorized", err, fault.KindOf(err))
	}
	if msg := err.Error(); strings.Contains(msg, wrong) || strings.Contains(msg, pullPassword) {
		t.Fatalf("error text %q contains a password", msg)
	}
	if _, err := e.rt.Pull(t.Context(), e.remote, nil, nil); !fault.Is(err, fault.NotAuthorized) {
		t.Fatalf("anonymous pull: %v (kind %v), want NotAuthorized", err, fault.KindOf(err))
	}
	if imgs, _ := e.rt.Images(t.Context()); len(imgs) != 0 {
		t.Fatalf("images after refused pulls: %+v, want none", imgs)
	}
}

func TestPullOfUnknownTagOrRepositoryIsNotFound(t *testing.T) {
	e := startPullEnv(t)
	for _, ref := range []string{
		strings.TrimSuffix(e.remote, ":1") + ":no-such-tag",
		e.reg.Addr + "/edgev2/no-such-repo:1",
	} {
		if _, err := e.rt.Pull(t.Context(), ref, e.auth(), nil); !fault.Is(err, fault.NotFound) {
			t.Errorf("pull %s: %v (kind %v), want NotFound", ref, err, fault.KindOf(err))
		}
	}
}

func TestPullFromUnreachableRegistryIsUnavailable(t *testing.T) {
	e := startPullEnv(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	ref := addr + "/edgev2/pullme:1"
	_, err = e.rt.Pull(t.Context(), ref, e.auth(), nil)
	if !fault.Is(err, fault.Unavailable) {
		t.Fatalf("pull %s: %v (kind %v), want Unavailable", ref, err, fault.KindOf(err))
	}
	if strings.Contains(err.Error(), pullPassword) {
		t.Fatalf("error text %q contains the password", err)
	}
}

func TestPullFromRegistryWithUntrustedCertificateIsRefused(t *testing.T) {
	e := startPullEnv(t)
	e.rt.SetRegistryTrust(nil) // system roots: the test CA is not among them
	_, err := e.rt.Pull(t.Context(), e.remote, e.auth(), nil)
	if !fault.Is(err, fault.Unavailable) || !strings.Contains(err.Error(), "not trusted") {
		t.Fatalf("pull with system roots: %v (kind %v), want Unavailable naming the untrusted certificate", err, fault.KindOf(err))
	}
}

func TestPullWithBadReferenceIsInvalidArgs(t *testing.T) {
	e := startPullEnv(t)
	for _, ref := range []string{"", "UPPERCASE:1", "a b", "registry.example.com/x:bad tag"} {
		if _, err := e.rt.Pull(t.Context(), ref, nil, nil); !fault.Is(err, fault.InvalidArgs) {
			t.Errorf("pull %q: %v (kind %v), want InvalidArgs", ref, err, fault.KindOf(err))
		}
	}
	if _, err := e.rt.Pull(t.Context(), e.remote, &PullAuth{Username: pullUser}, nil); !fault.Is(err, fault.InvalidArgs) {
		t.Errorf("pull with a user but no password: %v, want InvalidArgs", err)
	}
}

// slowFetcher serves blob as a reader whose bytes arrive as the test
// writes them.
type slowFetcher struct{ r io.ReadCloser }

func (f slowFetcher) Fetch(context.Context, ocispec.Descriptor) (io.ReadCloser, error) {
	return f.r, nil
}

func TestPullProgressReportsAPartialDownloadPeriodically(t *testing.T) {
	reports := make(chan PullProgress, 100)
	tr := newPullTracker("example.com/x:1", nil, func(p PullProgress) { reports <- p })
	tr.interval = 5 * time.Millisecond
	pr, pw := io.Pipe()
	blob := ocispec.Descriptor{Digest: digest.FromString("layer"), Size: 1000}
	stop := tr.tick()
	defer stop()
	rc, err := countingFetcher{f: slowFetcher{pr}, t: tr}.Fetch(t.Context(), blob)
	if err != nil {
		t.Fatal(err)
	}
	go pw.Write(make([]byte, 400))
	if _, err := io.ReadFull(rc, make([]byte, 400)); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-reports:
		if p.Status != PullDownloading || p.Layer != blob.Digest.String() || p.Done != 400 || p.Total != 1000 {
			t.Fatalf("report during the download: %+v, want downloading %s at 400 of 1000", p, blob.Digest)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no report while the download was in progress")
	}
	go func() { pw.Write(make([]byte, 600)); pw.Close() }()
	if n, err := io.Copy(io.Discard, rc); err != nil || n != 600 {
		t.Fatalf("read rest: %d, %v", n, err)
	}
	rc.Close()
	stop()
	var last PullProgress
	for len(reports) > 0 {
		last = <-reports
	}
	if last.Status != PullDownloaded || last.Done != 1000 || last.Total != 1000 {
		t.Fatalf("report after the download: %+v, want downloaded at 1000 of 1000", last)
	}
}
