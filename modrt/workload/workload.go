// Package workload is the iotedged-compatible workload API a module reaches
// on /var/run/iotedge/workload.sock: it signs with the module's derived key
// and hands out the trust bundle, only to processes of that module.
package workload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgev2/edgev2/internal/unixsock"
	"github.com/edgev2/edgev2/modrt/ctrd"
	"github.com/edgev2/edgev2/modrt/modspec"
)

// APIVersions the workload API accepts (aziot-edged's set).
var APIVersions = map[string]bool{
	"2018-06-28": true, "2019-01-30": true, "2019-10-22": true, "2019-11-05": true,
	"2020-07-07": true, "2020-10-10": true, "2021-12-07": true, "2022-08-03": true,
}

// Backend is what the workload API needs of the device.
type Backend interface {
	// SignAsModule is HMAC-SHA256 with the module's derived key.
	SignAsModule(ctx context.Context, module, key string, data []byte) ([]byte, error)
	// TrustBundle is the PEM of the CAs modules should trust.
	TrustBundle(ctx context.Context) (string, error)
	// OwnsPid reports whether pid is a process of the module's container.
	OwnsPid(ctx context.Context, module string, pid int32) bool
	// ServerCert issues a server certificate for the module under the edge
	// CA: the chain (leaf first) and the private key, both PEM.
	ServerCert(ctx context.Context, module, commonName string, notAfter time.Time) (chainPEM, keyPEM string, err error)
	// IdentityCert issues the module's client certificate under the edge
	// CA (CN = module, SAN URI azureiot://hub/devices/dev/modules/module).
	IdentityCert(ctx context.Context, module string) (chainPEM, keyPEM string, err error)
	// Encrypt and Decrypt are AES-256-GCM under the module's own key,
	// derived in the Keys service for (module, generation); a genID that is
	// not the module's real generation id is fault.NotAuthorized (403).
	Encrypt(ctx context.Context, module, genID string, plaintext, iv []byte) ([]byte, error)
	Decrypt(ctx context.Context, module, genID string, ciphertext, iv []byte) ([]byte, error)
	// ManifestTrustBundle is the PEM deployment manifests are signed
	// under ("" when none is configured).
	ManifestTrustBundle(ctx context.Context) (string, error)
	// Module is the module's status and spec (nil when the runtime no
	// longer has it); fault.NotFound when it is gone.
	Module(ctx context.Context, module string) (ctrd.Status, *modspec.Spec, error)
}

// MaxConns is how many connections one module's socket holds at once; the
// module's further connections are closed as soon as they are accepted, so
// a module cannot spend modrtd's descriptors (two per connection: the
// socket and its pidfd) or goroutines without bound.
const MaxConns = 64

// Manager serves one socket per module under dir/<module>/workload.sock.
// Containers bind-mount dir/<module> at /var/run/iotedge, so a socket
// recreated by a restarted modrtd appears inside the running container.
type Manager struct {
	dir string
	be  Backend
	log *slog.Logger

	mu      sync.Mutex
	servers map[string]*http.Server
}

// NewManager serves sockets under dir.
func NewManager(dir string, be Backend, log *slog.Logger) *Manager {
	return &Manager{dir: dir, be: be, log: log, servers: map[string]*http.Server{}}
}

// Dir is the host directory to bind at /var/run/iotedge in the module.
func (m *Manager) Dir(module string) string { return filepath.Join(m.dir, module) }

type credKey struct{}

// pidfdKey holds the pidfd of the process that connected (absent on
// kernels without SO_PEERPIDFD).
type pidfdKey struct{}

// ownedKey holds a connection's *atomic.Bool, set once its process was
// found to be the module's (only on connections with a pidfd).
type ownedKey struct{}

// Listen starts (or restarts) the module's socket.
func (m *Manager) Listen(module string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.servers[module]; ok {
		old.Close()
	}
	dir := m.Dir(module)
	// The directory is bound into the module (read-only; older containers
	// had it read-write), so its contents are the module's: the socket is
	// made through a descriptor of the directory, never by path.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("workload socket directory for %s: %w", module, err)
	}
	// 0755 whatever the umask (the unit's is 0077): a module process that
	// is not root must reach its socket. dir's parent is modrtd's alone.
	if err := os.Chmod(dir, 0o755); err != nil {
		return fmt.Errorf("workload socket directory for %s: %w", module, err)
	}
	// Any uid in the container may connect; the peer's pid decides.
	l, err := unixsock.Listen(dir, "workload.sock", 0o666)
	if err != nil {
		return fmt.Errorf("workload socket for %s: %w", module, err)
	}
	// Each connection's pidfd (the connecting process), closed with it.
	var pidfdMu sync.Mutex
	pidfds := map[net.Conn]int{}
	var conns atomic.Int64 // open connections, for MaxConns
	srv := &http.Server{
		Handler: m.handler(module),
		// A module that stalls a request or idles on a connection gives
		// its slot back (MaxConns).
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if uc, ok := c.(*net.UnixConn); ok {
				if raw, err := uc.SyscallConn(); err == nil {
					var cred *unix.Ucred
					pidfd := -1
					raw.Control(func(fd uintptr) {
						cred, _ = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
						pidfd = unixsock.PeerPidfd(int(fd))
					})
					if pidfd >= 0 {
						pidfdMu.Lock()
						pidfds[c] = pidfd
						pidfdMu.Unlock()
						ctx = context.WithValue(ctx, pidfdKey{}, pidfd)
						ctx = context.WithValue(ctx, ownedKey{}, new(atomic.Bool))
					}
					if cred != nil {
						return context.WithValue(ctx, credKey{}, cred)
					}
				}
			}
			return ctx
		},
		ConnState: func(c net.Conn, st http.ConnState) {
			if st == http.StateNew && conns.Add(1) > MaxConns {
				// The server then sees it closed (StateClosed below).
				c.Close()
			}
			if st == http.StateClosed || st == http.StateHijacked {
				conns.Add(-1)
				pidfdMu.Lock()
				if fd, ok := pidfds[c]; ok {
					unix.Close(fd)
					delete(pidfds, c)
				}
				pidfdMu.Unlock()
			}
		},
	}
	m.servers[module] = srv
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.log.Warn("workload socket stopped", "module", module, "err", err)
		}
	}()
	return nil
}

// Close stops a module's socket and removes it.
func (m *Manager) Close(module string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if srv, ok := m.servers[module]; ok {
		srv.Close()
		delete(m.servers, module)
	}
	os.RemoveAll(m.Dir(module))
}

// CloseAll stops every socket (modrtd is stopping; modules keep running).
func (m *Manager) CloseAll() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, srv := range m.servers {
		srv.Close()
		delete(m.servers, name)
	}
}
