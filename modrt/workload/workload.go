// Package workload is the iotedged-compatible workload API a module reaches
// on /var/run/iotedge/workload.sock: it signs with the module's derived key
// and hands out the trust bundle, only to processes of that module.
package workload

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgev2/edgev2/internal/fault"
	"github.com/edgev2/edgev2/internal/unixsock"
	"github.com/edgev2/edgev2/modrt"
	"github.com/edgev2/edgev2/modrt/mgmt"
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
	Module(ctx context.Context, module string) (modrt.Status, *modrt.Spec, error)
}

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
	// Any uid in the container may connect; the peer's pid decides.
	l, err := unixsock.Listen(dir, "workload.sock", 0o666)
	if err != nil {
		return fmt.Errorf("workload socket for %s: %w", module, err)
	}
	// Each connection's pidfd (the connecting process), closed with it.
	var pidfdMu sync.Mutex
	pidfds := map[net.Conn]int{}
	srv := &http.Server{
		Handler: m.handler(module),
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
					}
					if cred != nil {
						return context.WithValue(ctx, credKey{}, cred)
					}
				}
			}
			return ctx
		},
		ConnState: func(c net.Conn, st http.ConnState) {
			if st == http.StateClosed || st == http.StateHijacked {
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

type errorBody struct {
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, errorBody{Message: fmt.Sprintf(format, args...)})
}

func statusOf(err error) int {
	switch fault.KindOf(err) {
	case fault.NotFound:
		return http.StatusNotFound
	case fault.InvalidArgs:
		return http.StatusBadRequest
	case fault.NotAuthorized:
		return http.StatusForbidden
	case fault.Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// handler serves one module's socket.
func (m *Manager) handler(module string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /modules/{name}/genid/{genid}/sign", func(w http.ResponseWriter, r *http.Request) {
		if !m.allowed(w, r, module, true) {
			return
		}
		var req struct {
			KeyID string `json:"keyId"`
			Algo  string `json:"algo"`
			Data  string `json:"data"`
		}
		if !readJSON(w, r, 1<<20, &req) {
			return
		}
		if req.Algo != "HMACSHA256" {
			fail(w, http.StatusBadRequest, "algo must be HMACSHA256, not %q", req.Algo)
			return
		}
		if req.KeyID != "primary" && req.KeyID != "secondary" {
			fail(w, http.StatusBadRequest, "keyId must be primary or secondary, not %q", req.KeyID)
			return
		}
		data, err := base64.StdEncoding.DecodeString(req.Data)
		if err != nil {
			fail(w, http.StatusBadRequest, "data is not base64")
			return
		}
		digest, err := m.be.SignAsModule(r.Context(), module, req.KeyID, data)
		if err != nil {
			m.log.Warn("workload sign failed", "module", module, "err", err)
			fail(w, statusOf(err), "%s", fault.Message(err))
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"digest": base64.StdEncoding.EncodeToString(digest)})
	})
	mux.HandleFunc("POST /modules/{name}/genid/{genid}/certificate/server", func(w http.ResponseWriter, r *http.Request) {
		if !m.allowed(w, r, module, true) {
			return
		}
		var req struct {
			CommonName string `json:"commonName"`
			Expiration string `json:"expiration"`
		}
		if !readJSON(w, r, 64<<10, &req) {
			return
		}
		if !validHostname(req.CommonName) {
			fail(w, http.StatusBadRequest, "commonName %q is not a host name", req.CommonName)
			return
		}
		notAfter, err := time.Parse(time.RFC3339, req.Expiration)
		if err != nil || !notAfter.After(time.Now()) {
			fail(w, http.StatusBadRequest, "expiration %q is not an RFC 3339 time in the future", req.Expiration)
			return
		}
		if maxLife := time.Now().Add(90 * 24 * time.Hour); notAfter.After(maxLife) {
			notAfter = maxLife
		}
		chain, key, err := m.be.ServerCert(r.Context(), module, req.CommonName, notAfter)
		if err != nil {
			m.log.Warn("workload server certificate failed", "module", module, "err", err)
			fail(w, statusOf(err), "%s", fault.Message(err))
			return
		}
		writeCert(w, chain, key)
	})
	mux.HandleFunc("POST /modules/{name}/certificate/identity", func(w http.ResponseWriter, r *http.Request) {
		if !m.allowed(w, r, module, true) {
			return
		}
		chain, key, err := m.be.IdentityCert(r.Context(), module)
		if err != nil {
			m.log.Warn("workload identity certificate failed", "module", module, "err", err)
			fail(w, statusOf(err), "%s", fault.Message(err))
			return
		}
		writeCert(w, chain, key)
	})
	for _, op := range []string{"encrypt", "decrypt"} {
		mux.HandleFunc("POST /modules/{name}/genid/{genid}/"+op, func(w http.ResponseWriter, r *http.Request) {
			if !m.allowed(w, r, module, true) {
				return
			}
			var req struct {
				Plaintext  *string `json:"plaintext"`
				Ciphertext *string `json:"ciphertext"`
				IV         *string `json:"initializationVector"`
			}
			if !readJSON(w, r, 1<<20, &req) {
				return
			}
			in, field := req.Plaintext, "plaintext"
			if op == "decrypt" {
				in, field = req.Ciphertext, "ciphertext"
			}
			if in == nil || req.IV == nil {
				fail(w, http.StatusBadRequest, "request body needs %q and \"initializationVector\" (base64)", field)
				return
			}
			data, err1 := base64.StdEncoding.DecodeString(*in)
			iv, err2 := base64.StdEncoding.DecodeString(*req.IV)
			if err1 != nil || err2 != nil {
				fail(w, http.StatusBadRequest, "%s and initializationVector must be base64", field)
				return
			}
			if len(iv) == 0 {
				fail(w, http.StatusBadRequest, "initializationVector is empty")
				return
			}
			genID := r.PathValue("genid")
			var out []byte
			if op == "encrypt" {
				out, err1 = m.be.Encrypt(r.Context(), module, genID, data, iv)
			} else {
				out, err1 = m.be.Decrypt(r.Context(), module, genID, data, iv)
			}
			if err1 != nil {
				m.log.Warn("workload "+op+" failed", "module", module, "err", err1)
				fail(w, statusOf(err1), "%s", fault.Message(err1))
				return
			}
			key := "ciphertext"
			if op == "decrypt" {
				key = "plaintext"
			}
			writeJSON(w, http.StatusOK, map[string]string{key: base64.StdEncoding.EncodeToString(out)})
		})
	}
	// The list aziot-edged serves here is every module's ModuleDetails,
	// settings and env included. A module must learn nothing of other
	// modules (DESIGN "Threat model"), so it sees its own entry only;
	// edgeAgent lists all modules on the management socket. "/modules/"
	// too, as aziot-edged (older diagnostics images call it).
	listModules := func(w http.ResponseWriter, r *http.Request) {
		if !m.allowed(w, r, module, false) {
			return
		}
		list := struct {
			Modules []json.RawMessage `json:"modules"`
		}{Modules: []json.RawMessage{}}
		st, spec, err := m.be.Module(r.Context(), module)
		switch {
		case fault.Is(err, fault.NotFound):
		case err != nil:
			m.log.Warn("workload module list failed", "module", module, "err", err)
			fail(w, statusOf(err), "%s", fault.Message(err))
			return
		default:
			d, err := mgmt.ModuleDetailsJSON(st, spec)
			if err != nil {
				m.log.Warn("workload module list failed", "module", module, "err", err)
				fail(w, http.StatusInternalServerError, "internal error; the service log has the details")
				return
			}
			list.Modules = append(list.Modules, d)
		}
		writeJSON(w, http.StatusOK, list)
	}
	mux.HandleFunc("GET /modules", listModules)
	mux.HandleFunc("GET /modules/{$}", listModules)
	mux.HandleFunc("GET /manifest-trust-bundle", func(w http.ResponseWriter, r *http.Request) {
		if !m.allowed(w, r, module, false) {
			return
		}
		pemText, err := m.be.ManifestTrustBundle(r.Context())
		if err != nil {
			fail(w, statusOf(err), "%s", fault.Message(err))
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"certificate": pemText})
	})
	mux.HandleFunc("GET /trust-bundle", func(w http.ResponseWriter, r *http.Request) {
		if !m.allowed(w, r, module, false) {
			return
		}
		pemText, err := m.be.TrustBundle(r.Context())
		if err != nil {
			fail(w, statusOf(err), "%s", fault.Message(err))
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"certificate": pemText})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if !m.allowed(w, r, module, false) {
			return
		}
		fail(w, http.StatusNotFound, "no workload API route %s %s", r.Method, r.URL.Path)
	})
	return mux
}

// readJSON reads a JSON body of at most limit bytes into v, or answers
// 413/400 and returns false.
func readJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) bool {
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil || int64(len(body)) > limit {
		fail(w, http.StatusRequestEntityTooLarge, "request body over %d KiB", limit>>10)
		return false
	}
	if err := json.Unmarshal(body, v); err != nil {
		fail(w, http.StatusBadRequest, "request body is not valid JSON: %v", err)
		return false
	}
	return true
}

// writeCert answers 201 with aziot-edged's certificate response; the
// expiration is the leaf's.
func writeCert(w http.ResponseWriter, chain, key string) {
	expiration := ""
	if b, _ := pem.Decode([]byte(chain)); b != nil {
		if c, err := x509.ParseCertificate(b.Bytes); err == nil {
			expiration = c.NotAfter.UTC().Format(time.RFC3339)
		}
	}
	writeJSON(w, http.StatusCreated, map[string]any{
		"certificate": chain,
		"privateKey":  map[string]string{"type": "key", "bytes": key},
		"expiration":  expiration,
	})
}

// allowed checks the api-version, that the caller is a process of this
// socket's module, and (for module routes) that it names itself.
func (m *Manager) allowed(w http.ResponseWriter, r *http.Request, module string, namedInPath bool) bool {
	if v := r.URL.Query().Get("api-version"); !APIVersions[v] {
		fail(w, http.StatusBadRequest, "unsupported or missing api-version %q", v)
		return false
	}
	cred, _ := r.Context().Value(credKey{}).(*unix.Ucred)
	if cred == nil || !m.be.OwnsPid(r.Context(), module, cred.Pid) {
		fail(w, http.StatusForbidden, "the caller is not a process of module %s", module)
		return false
	}
	// The pid was read when the connection was made: if that process has
	// exited since, its number may now be another's (a process of this
	// module), and the connection is someone else's. Checked after the
	// pid's owner, so a verdict about a reused pid is never kept.
	if pidfd, ok := r.Context().Value(pidfdKey{}).(int); ok && !unixsock.PidfdAlive(pidfd) {
		fail(w, http.StatusForbidden, "the process that connected (pid %d) has exited; connect again", cred.Pid)
		return false
	}
	if namedInPath && r.PathValue("name") != module {
		fail(w, http.StatusForbidden, "module %s may not act as module %s", module, r.PathValue("name"))
		return false
	}
	return true
}

// validHostname accepts DNS names (labels of letters, digits and hyphens).
func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
