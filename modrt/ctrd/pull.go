package ctrd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/content"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/images"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/remotes"
	"github.com/containerd/containerd/remotes/docker"
	remoteerrors "github.com/containerd/containerd/remotes/errors"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/edgev2/edgev2/fault"
)

// PullAuth are registry credentials (basic auth, or the user and password
// a token service exchanges for a bearer token).
type PullAuth struct {
	Username, Password string
}

// PullProgress is one progress report of a Pull.
type PullProgress struct {
	Ref string
	// Done and Total count the bytes of the blobs (manifests, config,
	// layers) this pull downloads; blobs already present are not counted.
	// Total grows as manifests name their blobs; Done never decreases.
	Done, Total int64
	Layer       string // digest of the blob the report is about; "" for the pull as a whole
	Status      string // PullResolving, PullDownloading, PullDownloaded or PullDone
}

// Statuses of PullProgress.
const (
	PullResolving   = "resolving"   // looking the reference up
	PullDownloading = "downloading" // Layer is being downloaded (periodic)
	PullDownloaded  = "downloaded"  // Layer is complete
	PullDone        = "done"        // image stored and unpacked; Done == Total
)

// pullProgressInterval is how often in-flight downloads are reported.
const pullProgressInterval = 500 * time.Millisecond

// SetRegistryTrust makes pool the only trust anchors Pull accepts for
// registries' TLS certificates; nil restores the system roots. To trust a
// private CA as well as public registries, start from x509.SystemCertPool.
func (r *Runtime) SetRegistryTrust(pool *x509.CertPool) { r.registryPool.Store(pool) }

func (r *Runtime) registryRoots() *x509.CertPool { return r.registryPool.Load() }

// Pull downloads image ref ("busybox", "registry.example.com/app:1.2")
// over HTTPS, stores it under its normalised name
// ("docker.io/library/busybox:latest") and unpacks it for the runtime's
// snapshotter, so Create can use it. auth nil pulls anonymously. progress,
// if not nil, is called with reports until Pull returns, never
// concurrently; it must return quickly. Pull returns the digest of the
// image's manifest or index.
func (r *Runtime) Pull(ctx context.Context, ref string, auth *PullAuth, progress func(PullProgress)) (string, error) {
	ctx = namespaces.WithNamespace(ctx, r.cfg.Namespace)
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return "", fault.Wrap(fault.InvalidArgs, err, "bad image reference %q: %v", ref, err)
	}
	name := named.String()
	domain := reference.Domain(named)
	if auth != nil && (auth.Username == "" || auth.Password == "") {
		return "", fault.New(fault.InvalidArgs, "pull %s: credentials need both a user name and a password", name)
	}

	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: r.registryRoots(), MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		ExpectContinueTimeout: 5 * time.Second,
		IdleConnTimeout:       30 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	authOpts := []docker.AuthorizerOpt{docker.WithAuthClient(client)}
	var hosts docker.RegistryHosts
	if auth != nil {
		// Credentials go only to the registry's own hosts (a blob
		// redirect to a CDN that challenges must not get them).
		authOpts = append(authOpts, docker.WithAuthCreds(func(host string) (string, string, error) {
			if registryHostOf(hosts, domain, host) {
				return auth.Username, auth.Password, nil
			}
			return "", "", nil
		}))
	}
	hosts = docker.ConfigureDefaultRegistries(
		docker.WithAuthorizer(docker.NewDockerAuthorizer(authOpts...)),
		docker.WithClient(client),
	)
	resolver := docker.NewResolver(docker.ResolverOptions{Hosts: hosts})

	t := newPullTracker(name, r.client.ContentStore(), progress)
	t.report(PullProgress{Status: PullResolving})
	stop := t.tick()
	img, err := r.client.Pull(ctx, name,
		containerd.WithResolver(countingResolver{Resolver: resolver, t: t}),
		containerd.WithImageHandlerWrapper(t.wrap),
		containerd.WithPullUnpack,
		containerd.WithPullSnapshotter(r.snapshotter),
	)
	stop()
	if err != nil {
		return "", pullError(err, name, domain)
	}
	dgst := img.Target().Digest.String()
	t.finish()
	r.log.Info("image pulled", "image", name, "digest", dgst, "bytes", t.doneBytes(), "snapshotter", r.snapshotter)
	return dgst, nil
}

// registryHostOf reports whether host is one of the hosts serving the
// registry of domain.
func registryHostOf(hosts docker.RegistryHosts, domain, host string) bool {
	if host == domain {
		return true
	}
	hs, err := hosts(domain)
	if err != nil {
		return false
	}
	for _, h := range hs {
		if h.Host == host {
			return true
		}
	}
	return false
}

// pullError turns a failed pull into a caller-facing error. The
// credentials are never part of it (nor of containerd's error text,
// which only names URLs).
func pullError(err error, name, domain string) error {
	var status remoteerrors.ErrUnexpectedStatus
	hasStatus := errors.As(err, &status)
	var certErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalidCert x509.CertificateInvalidError
	var opErr *net.OpError
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, docker.ErrInvalidAuthorization),
		hasStatus && (status.StatusCode == http.StatusUnauthorized || status.StatusCode == http.StatusForbidden):
		return fault.Wrap(fault.NotAuthorized, err, "pull %s: registry %s refused access; check the credentials and that the repository exists", name, domain)
	case errors.As(err, &certErr), errors.As(err, &unknownCA), errors.As(err, &hostErr), errors.As(err, &invalidCert):
		return fault.Wrap(fault.Unavailable, err, "pull %s: the certificate of registry %s is not trusted (configure its CA as a registry trust anchor)", name, domain)
	case errors.As(err, &dnsErr):
		return fault.Wrap(fault.Unavailable, err, "pull %s: registry host %s cannot be resolved", name, domain)
	case errors.As(err, &opErr):
		return fault.Wrap(fault.Unavailable, err, "pull %s: registry %s is not reachable: %v", name, domain, opErr.Err)
	case errors.Is(err, io.ErrUnexpectedEOF), hasStatus && status.StatusCode >= 500:
		return fault.Wrap(fault.Unavailable, err, "pull %s: registry %s failed mid-transfer; try again", name, domain)
	case errdefs.IsNotFound(err):
		return fault.Wrap(fault.NotFound, err, "pull %s: registry %s has no such image", name, domain)
	case isUnavailable(err):
		return classify(err, "pull %s", name)
	}
	return fault.Wrap(fault.Failed, err, "pull %s: %v", name, err)
}

// pullTracker counts the bytes of a pull's downloads and reports them.
type pullTracker struct {
	ref      string
	store    content.Store
	progress func(PullProgress)
	interval time.Duration // of "downloading" reports

	mu       sync.Mutex // serialises reports; guards the fields below
	blobs    map[digest.Digest]*pullBlob
	total    int64
	lastDone int64
}

type pullBlob struct {
	size     int64
	pos      atomic.Int64 // bytes of it downloaded
	reported int64        // pos at the last "downloading" report; under mu
	active   bool         // a download is open; under mu
}

func newPullTracker(ref string, store content.Store, progress func(PullProgress)) *pullTracker {
	return &pullTracker{ref: ref, store: store, progress: progress, interval: pullProgressInterval, blobs: map[digest.Digest]*pullBlob{}}
}

// plan adds desc to the blobs to download and returns its entry.
func (t *pullTracker) plan(desc ocispec.Descriptor) *pullBlob {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.planLocked(desc)
}

func (t *pullTracker) planLocked(desc ocispec.Descriptor) *pullBlob {
	b, ok := t.blobs[desc.Digest]
	if !ok {
		b = &pullBlob{size: desc.Size}
		t.blobs[desc.Digest] = b
		t.total += desc.Size
	}
	return b
}

// wrap plans the blobs a manifest or index names as soon as it is read,
// before they download, so Total covers the whole image early.
func (t *pullTracker) wrap(h images.Handler) images.Handler {
	return images.HandlerFunc(func(ctx context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		children, err := h.Handle(ctx, desc)
		if err != nil || !(images.IsManifestType(desc.MediaType) || images.IsIndexType(desc.MediaType)) {
			return children, err
		}
		for _, c := range children {
			if _, err := t.store.Info(ctx, c.Digest); err == nil {
				continue // present: nothing to download
			}
			t.plan(c)
		}
		return children, nil
	})
}

// tick reports in-flight downloads periodically until the returned stop
// (which may be called more than once) is called.
func (t *pullTracker) tick() (stop func()) {
	if t.progress == nil {
		return func() {}
	}
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tk := time.NewTicker(t.interval)
		defer tk.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tk.C:
				t.mu.Lock()
				for d, b := range t.blobs {
					if pos := b.pos.Load(); b.active && pos != b.reported {
						b.reported = pos
						t.reportLocked(PullProgress{Layer: d.String(), Status: PullDownloading})
					}
				}
				t.mu.Unlock()
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(quit) })
		<-done
	}
}

func (t *pullTracker) report(p PullProgress) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.reportLocked(p)
}

// reportLocked fills in the counts and calls progress; t.mu is held.
func (t *pullTracker) reportLocked(p PullProgress) {
	if t.progress == nil {
		return
	}
	p.Ref = t.ref
	p.Done, p.Total = t.doneLocked(), t.total
	t.progress(p)
}

// doneLocked is the bytes downloaded, never less than last reported (a
// resumed download re-reads from its start).
func (t *pullTracker) doneLocked() int64 {
	var done int64
	for _, b := range t.blobs {
		done += min(b.pos.Load(), b.size)
	}
	t.lastDone = max(t.lastDone, min(done, t.total))
	return t.lastDone
}

func (t *pullTracker) doneBytes() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.doneLocked()
}

// finish sends the final report: blobs skipped (because another pull or
// an earlier snapshot had them) count as done.
func (t *pullTracker) finish() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lastDone = t.total
	t.reportLocked(PullProgress{Status: PullDone})
}

// countingResolver hands out fetchers that count what they read.
type countingResolver struct {
	remotes.Resolver
	t *pullTracker
}

func (c countingResolver) Fetcher(ctx context.Context, ref string) (remotes.Fetcher, error) {
	f, err := c.Resolver.Fetcher(ctx, ref)
	if err != nil {
		return nil, err
	}
	return countingFetcher{f: f, t: c.t}, nil
}

type countingFetcher struct {
	f remotes.Fetcher
	t *pullTracker
}

func (c countingFetcher) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	rc, err := c.f.Fetch(ctx, desc)
	if err != nil {
		return nil, err
	}
	c.t.mu.Lock()
	b := c.t.planLocked(desc)
	b.pos.Store(0)
	b.active = true
	c.t.mu.Unlock()
	cr := &countingReader{rc: rc, b: b, t: c.t, digest: desc.Digest}
	if s, ok := rc.(io.Seeker); ok {
		// content.Copy seeks to resume a partial download.
		return &seekingCountingReader{countingReader: cr, s: s}, nil
	}
	return cr, nil
}

type countingReader struct {
	rc     io.ReadCloser
	b      *pullBlob
	t      *pullTracker
	digest digest.Digest
	closed bool
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.rc.Read(p)
	c.b.pos.Add(int64(n))
	return n, err
}

// Close ends the download; content.Copy has committed the blob by then
// if it is complete.
func (c *countingReader) Close() error {
	err := c.rc.Close()
	if c.closed {
		return err
	}
	c.closed = true
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	c.b.active = false
	if c.b.pos.Load() >= c.b.size {
		c.t.reportLocked(PullProgress{Layer: c.digest.String(), Status: PullDownloaded})
	}
	return err
}

type seekingCountingReader struct {
	*countingReader
	s io.Seeker
}

func (c *seekingCountingReader) Seek(offset int64, whence int) (int64, error) {
	pos, err := c.s.Seek(offset, whence)
	if err == nil {
		c.b.pos.Store(pos)
	}
	return pos, err
}
