package mgmt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/modrt/modspec"
)

// APIVersions are the api-version values aziot-edged's management API
// accepts (edgelet-http's ApiVersion), oldest first.
var APIVersions = []string{
	"2018-06-28", "2019-01-30", "2019-10-22", "2019-11-05",
	"2020-07-07", "2021-12-07", "2022-08-03",
}

// MaxConns is how many connections Serve holds at once; further ones are
// closed as soon as they are accepted, so edgeAgent (a module) cannot spend
// modrtd's descriptors (two per connection: the socket and its pidfd) or
// goroutines without bound.
const MaxConns = 64

// MaxBodySize caps a request body.
const MaxBodySize = 1 << 20

// Server serves the management API.
type Server struct {
	modules    Modules
	identities Identities
	info       SystemInfo
	log        *slog.Logger
	resolve    PidResolver
	bundle     SupportBundle
	trustRoot  bool // uid 0 may call agent-only routes (iotedge-style tools)
	started    time.Time

	cpuMu   sync.Mutex
	cpuLast cpuTimes
}

// NewServer serves m and ids. Until SetPidResolver is called only root may
// call the agent-only routes.
func NewServer(m Modules, ids Identities, info SystemInfo, log *slog.Logger) *Server {
	return &Server{modules: m, identities: ids, info: info, log: log, trustRoot: true, started: time.Now()}
}

// SetPidResolver sets how a caller's pid is mapped to its module; callers
// whose module is edgeAgent may use the agent-only routes. Call it before
// serving.
func (s *Server) SetPidResolver(r PidResolver) { s.resolve = r }

// SetSupportBundle sets what GET /systeminfo/supportbundle serves; without
// it the route answers 404. Call it before serving.
func (s *Server) SetSupportBundle(b SupportBundle) { s.bundle = b }

// Serve serves the API on l until ctx ends, then shuts down, giving
// requests in flight 10 s. Log followers are cut off at once.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	var conns atomic.Int64 // open connections, for MaxConns
	srv := &http.Server{
		Handler:     s.Handler(),
		ConnContext: ConnContext,
		ConnState: func(c net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				if conns.Add(1) > MaxConns {
					c.Close() // the server then sees it closed
				}
			case http.StateClosed, http.StateHijacked:
				conns.Add(-1)
			}
			ConnState(c, st)
		},
		ReadHeaderTimeout: 5 * time.Second,
		// An idle connection gives its slot back (MaxConns).
		IdleTimeout: 2 * time.Minute,
		ErrorLog:    slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if srv.Shutdown(sctx) != nil {
		srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// route is one method on one path.
type route struct {
	minVersion string // the oldest api-version that has it
	agentOnly  bool
	mutates    bool // runs to its end even if the caller goes away
	// handle answers the request, or returns the error that serve answers
	// with (fail: the one error path, statuses from fault.HTTPStatus).
	handle func(w http.ResponseWriter, r *http.Request, name string) error
}

// Handler is the API's http.Handler. The peer credentials come from
// ConnContext (Serve installs it).
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serve) }

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w}
	start := time.Now()
	rt, name, err := s.dispatch(r)
	if err == nil && rt.agentOnly {
		err = s.authorize(r.Context())
	}
	if err != nil {
		s.fail(rec, r, err)
	} else {
		if rt.mutates {
			r = r.WithContext(context.WithoutCancel(r.Context()))
		}
		if err := rt.handle(rec, r, name); err != nil {
			s.fail(rec, r, err)
		}
	}
	level := slog.LevelDebug
	if rt.mutates || rec.status >= 500 {
		level = slog.LevelInfo
	}
	peer, _ := PeerFrom(r.Context())
	s.log.Log(r.Context(), level, "management request", "method", r.Method, "path", r.URL.Path,
		"status", rec.status, "pid", peer.Pid, "uid", peer.Uid, "duration", time.Since(start))
}

// dispatch finds the route for r after checking its api-version, the way
// aziot-edged does: a bad or missing version is 400, a route newer than
// the version asked for is 404 (it does not exist in that version).
func (s *Server) dispatch(r *http.Request) (route, string, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return route{}, "", badRequest("invalid query string: %v", err)
	}
	if !q.Has("api-version") {
		return route{}, "", badRequest("api-version not specified")
	}
	v := q.Get("api-version")
	if !slices.Contains(APIVersions, v) {
		return route{}, "", badRequest("invalid api-version %q: use one of %s", v, strings.Join(APIVersions, ", "))
	}
	routes, name, ok := s.routes(r.URL.EscapedPath())
	if !ok {
		return route{}, "", &apiError{status: http.StatusNotFound, msg: "not found"}
	}
	rt, ok := routes[r.Method]
	if !ok {
		return route{}, "", badRequest("method not allowed")
	}
	if v < rt.minVersion {
		return route{}, "", &apiError{status: http.StatusNotFound,
			msg: fmt.Sprintf("not found: %s %s needs api-version %s or later", r.Method, r.URL.Path, rt.minVersion)}
	}
	return rt, name, nil
}

// routes returns the methods served on an escaped path and the
// (unescaped) module or identity name in it.
func (s *Server) routes(path string) (map[string]route, string, bool) {
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if !strings.HasPrefix(path, "/") {
		return nil, "", false
	}
	var name string
	if len(segs) >= 2 {
		n, err := url.PathUnescape(segs[1])
		if err != nil {
			return nil, "", false
		}
		name = n
	}
	const v1 = "2018-06-28"
	switch {
	// aziot-edged serves "/modules/" too (older diagnostics images call it).
	case segs[0] == "modules" && (len(segs) == 1 || len(segs) == 2 && segs[1] == ""):
		return map[string]route{
			http.MethodGet:  {minVersion: v1, handle: s.listModules},
			http.MethodPost: {minVersion: v1, agentOnly: true, mutates: true, handle: s.createModule},
		}, "", true
	case len(segs) == 2 && segs[0] == "modules" && name != "":
		return map[string]route{
			http.MethodGet:    {minVersion: v1, handle: s.getModule},
			http.MethodPut:    {minVersion: v1, agentOnly: true, mutates: true, handle: s.updateModule},
			http.MethodDelete: {minVersion: v1, agentOnly: true, mutates: true, handle: s.deleteModule},
		}, name, true
	case len(segs) == 3 && segs[0] == "modules" && name != "":
		switch segs[2] {
		case "start", "stop", "restart":
			action := segs[2]
			return map[string]route{http.MethodPost: {minVersion: v1, agentOnly: true, mutates: true,
				handle: func(w http.ResponseWriter, r *http.Request, name string) error {
					return s.moduleAction(w, r, name, action)
				}}}, name, true
		case "prepareupdate":
			return map[string]route{http.MethodPost: {minVersion: "2019-01-30", agentOnly: true, mutates: true, handle: s.prepareUpdate}}, name, true
		case "logs":
			return map[string]route{http.MethodGet: {minVersion: v1, handle: s.moduleLogs}}, name, true
		}
	// Some edgeAgent versions call "/identities/": aziot-edged serves both.
	case segs[0] == "identities" && (len(segs) == 1 || len(segs) == 2 && segs[1] == ""):
		return map[string]route{
			http.MethodGet:  {minVersion: v1, handle: s.listIdentities},
			http.MethodPost: {minVersion: v1, agentOnly: true, mutates: true, handle: s.createIdentity},
		}, "", true
	case len(segs) == 2 && segs[0] == "identities" && name != "":
		return map[string]route{
			http.MethodPut:    {minVersion: v1, agentOnly: true, mutates: true, handle: s.updateIdentity},
			http.MethodDelete: {minVersion: v1, agentOnly: true, mutates: true, handle: s.deleteIdentity},
		}, name, true
	case len(segs) == 1 && segs[0] == "systeminfo":
		return map[string]route{http.MethodGet: {minVersion: v1, handle: s.systemInfo}}, "", true
	case len(segs) == 2 && segs[0] == "systeminfo" && segs[1] == "resources":
		return map[string]route{http.MethodGet: {minVersion: "2019-11-05", handle: s.systemResources}}, "", true
	case len(segs) == 2 && segs[0] == "systeminfo" && segs[1] == "supportbundle":
		// Agent-only, unlike aziot-edged: the bundle holds every service's
		// journal and every module's logs, more than the read routes give.
		return map[string]route{http.MethodGet: {minVersion: "2020-07-07", agentOnly: true, handle: s.supportBundle}}, "", true
	case len(segs) == 2 && segs[0] == "device" && segs[1] == "reprovision":
		return map[string]route{http.MethodPost: {minVersion: "2019-10-22", agentOnly: true, mutates: true, handle: s.reprovision}}, "", true
	}
	return nil, "", false
}

// authorize lets the processes of edgeAgent and host processes of root
// through; a process of any other module is refused whatever its uid.
func (s *Server) authorize(ctx context.Context) error {
	peer, ok := PeerFrom(ctx)
	if !ok {
		return &apiError{status: http.StatusForbidden, msg: "forbidden: the caller's credentials are unknown; this API is only available to edgeAgent"}
	}
	if err := s.decide(ctx, peer); err != nil {
		return err
	}
	// Pid and uid were read when the connection was made: if that process
	// has exited, the pid may now be another's (a host process of root,
	// edgeAgent's) and the verdict above was about that one. Checked after
	// the verdict, so a verdict about a reused pid is never kept.
	if !peer.Alive() {
		return &apiError{status: http.StatusForbidden, msg: fmt.Sprintf("forbidden: the process that connected (pid %d) has exited; connect again", peer.Pid)}
	}
	return nil
}

// decide applies the rule to the peer's pid and uid.
func (s *Server) decide(ctx context.Context, peer Peer) error {
	if s.resolve != nil {
		// Modules run as uid 0 too: a process of a module is the agent or
		// nobody, whatever its uid (one with the host's pid namespace
		// reaches this socket through /proc/<agent pid>/root).
		m, err := s.resolve(ctx, peer.Pid)
		if err != nil {
			// Fail closed: a process of a module sharing the host's pid
			// namespace would otherwise pass for a host tool of root.
			s.log.Warn("management API: cannot tell whether the caller is a module's; refused", "pid", peer.Pid, "err", err)
			return &apiError{status: http.StatusServiceUnavailable, msg: fmt.Sprintf("cannot tell whether process %d is a module's (the container runtime does not answer); try again", peer.Pid)}
		}
		if m != "" {
			if m == AgentModule {
				return nil
			}
			return &apiError{status: http.StatusForbidden, msg: fmt.Sprintf("forbidden: process %d is module %s's, not edgeAgent's; this API is only available to edgeAgent", peer.Pid, m)}
		}
	}
	// Root on the host (iotedge-style tools). A process in a pid namespace
	// of its own is some container's, whatever the resolver could tell
	// (it cannot when containerd does not answer): never a host tool.
	if s.trustRoot && peer.Uid == 0 && inOurPidNS(peer.Pid) {
		return nil
	}
	return &apiError{status: http.StatusForbidden, msg: fmt.Sprintf("forbidden: process %d is not edgeAgent; this API is only available to edgeAgent", peer.Pid)}
}

// inOurPidNS reports whether pid lives in this process's pid namespace.
func inOurPidNS(pid int32) bool {
	ours, err1 := os.Readlink("/proc/self/ns/pid")
	theirs, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
	return err1 == nil && err2 == nil && ours == theirs
}

// moduleName checks a module name taken from the path.
func moduleName(name string) error {
	if err := modspec.ValidateName(name); err != nil {
		return badRequest("%s", fault.Message(err))
	}
	return nil
}

// statusRecorder keeps the status for the request log; Unwrap lets
// http.ResponseController flush through it.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(p)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
