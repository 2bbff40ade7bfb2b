package workload

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgev2/edgev2/internal/unixsock"
)

// routes serves one module's socket: each route is a method that returns
// its error, answered by writeError.
type routes struct {
	m      *Manager
	module string
	// calls bounds the module's requests being served at once (MaxCalls).
	calls chan struct{}
}

// MaxCalls is how many of one module's requests are served at once; the
// module's further requests wait. Each may hold a call to keyd, certd or
// identityd over modrtd's one bus connection, whose pending calls the bus
// bounds (128) for modrtd as a whole.
const MaxCalls = 8

// callTimeout bounds a request once it is being served. A module that
// hangs up does not end it (see handle).
const callTimeout = 30 * time.Second

type routeFunc func(w http.ResponseWriter, r *http.Request) error

// handler serves one module's socket.
func (m *Manager) handler(module string) http.Handler {
	h := &routes{m: m, module: module, calls: make(chan struct{}, MaxCalls)}
	mux := http.NewServeMux()
	// Routes naming a module act as it: the caller must be that module.
	h.handle(mux, "POST /modules/{name}/genid/{genid}/sign", true, h.sign)
	h.handle(mux, "POST /modules/{name}/genid/{genid}/certificate/server", true, h.serverCert)
	h.handle(mux, "POST /modules/{name}/certificate/identity", true, h.identityCert)
	h.handle(mux, "POST /modules/{name}/genid/{genid}/encrypt", true, h.encrypt)
	h.handle(mux, "POST /modules/{name}/genid/{genid}/decrypt", true, h.decrypt)
	// "/modules/" too, as aziot-edged (older diagnostics images call it).
	h.handle(mux, "GET /modules", false, h.listModules)
	h.handle(mux, "GET /modules/{$}", false, h.listModules)
	h.handle(mux, "GET /manifest-trust-bundle", false, certificateBundle(h.m.be.ManifestTrustBundle))
	h.handle(mux, "GET /trust-bundle", false, certificateBundle(h.m.be.TrustBundle))
	h.handle(mux, "/", false, func(w http.ResponseWriter, r *http.Request) error {
		return refuse(http.StatusNotFound, "no workload API route %s %s", r.Method, r.URL.Path)
	})
	return mux
}

func (h *routes) handle(mux *http.ServeMux, pattern string, namedInPath bool, f routeFunc) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		select {
		case h.calls <- struct{}{}:
			defer func() { <-h.calls }()
		case <-r.Context().Done():
			return
		}
		// A request runs to its end even if the module hangs up: a call
		// it made to a service runs there (and counts against modrtd's
		// bus connection) until the service answers, and a request that
		// gave its slot back on hang-up would let the module pile up
		// such calls without bound (red team s14).
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), callTimeout)
		defer cancel()
		r = r.WithContext(ctx)
		err := h.allowed(r, namedInPath)
		if err == nil {
			err = f(w, r)
		}
		if err != nil {
			writeError(w, h.m.log, h.module, err)
		}
	})
}

// allowed checks the api-version, that the caller is a process of this
// socket's module, and (for module routes) that it names itself.
func (h *routes) allowed(r *http.Request, namedInPath bool) error {
	if v := r.URL.Query().Get("api-version"); !APIVersions[v] {
		return refuse(http.StatusBadRequest, "unsupported or missing api-version %q", v)
	}
	cred, _ := r.Context().Value(credKey{}).(*unix.Ucred)
	pidfd, hasPidfd := r.Context().Value(pidfdKey{}).(int)
	// A process's module cannot change while it lives, and a connection
	// does not outlive its module's socket (removing the module closes
	// it): once the connecting process was found to be the module's, the
	// verdict holds for the connection as long as that process does.
	owned, _ := r.Context().Value(ownedKey{}).(*atomic.Bool)
	if owned == nil || !owned.Load() {
		if cred == nil || !h.m.be.OwnsPid(r.Context(), h.module, cred.Pid) {
			return refuse(http.StatusForbidden, "the caller is not a process of module %s", h.module)
		}
	}
	// The pid was read when the connection was made: if that process has
	// exited since, its number may now be another's (a process of this
	// module), and the connection is someone else's. Checked after the
	// pid's owner, so a verdict about a reused pid is never kept.
	if hasPidfd && !unixsock.PidfdAlive(pidfd) {
		return refuse(http.StatusForbidden, "the process that connected (pid %d) has exited; connect again", cred.Pid)
	}
	if owned != nil && hasPidfd {
		owned.Store(true)
	}
	if namedInPath && r.PathValue("name") != h.module {
		return refuse(http.StatusForbidden, "module %s may not act as module %s", h.module, r.PathValue("name"))
	}
	return nil
}

// readJSON reads a JSON body of at most limit bytes into v (413 or 400
// when it cannot).
func readJSON(r *http.Request, limit int64, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil || int64(len(body)) > limit {
		return refuse(http.StatusRequestEntityTooLarge, "request body over %d KiB", limit>>10)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return refuse(http.StatusBadRequest, "request body is not valid JSON: %v", err)
	}
	return nil
}
