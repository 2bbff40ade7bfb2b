package est

import (
	"log/slog"
	"net/http/httptest"
)

// TB is the part of testing.TB StartTestServer uses, so this file need not
// import testing.
type TB interface {
	Helper()
	Cleanup(func())
	Fatalf(format string, args ...any)
	TempDir() string
}

// StartTestServer runs the EST CA in-process over HTTPS on 127.0.0.1 with
// the same TLS setup as edgev2-labcloud, for other packages' tests. It
// returns the base URL ("https://127.0.0.1:PORT"; EST lives under
// url+PathPrefix), the CA certificate in PEM and the server. cfg.BaseURL
// defaults to the returned URL. The server stops on t's cleanup.
func StartTestServer(t TB, cfg Config) (url string, caPEM []byte, srv *Server) {
	t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	url = "https://" + ts.Listener.Addr().String()
	if cfg.BaseURL == "" {
		cfg.BaseURL = url
	}
	var logger *slog.Logger
	if l, ok := t.(interface{ Logf(string, ...any) }); ok {
		logger = slog.New(slog.NewTextHandler(logfWriter{l}, nil))
	}
	srv, err := NewServer(cfg, t.TempDir(), logger)
	if err != nil {
		ts.Close()
		t.Fatalf("start EST test server: %v", err)
	}
	tlsCfg, err := srv.TLSConfig("127.0.0.1", "localhost")
	if err != nil {
		ts.Close()
		t.Fatalf("start EST test server: %v", err)
	}
	ts.Config.Handler = srv.Handler()
	ts.TLS = tlsCfg
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return url, srv.CAPEM(), srv
}

// logfWriter sends the server's log lines to t.Logf.
type logfWriter struct {
	l interface{ Logf(string, ...any) }
}

func (w logfWriter) Write(p []byte) (int, error) {
	w.l.Logf("labcloud est: %s", trimNewline(p))
	return len(p), nil
}

func trimNewline(p []byte) []byte {
	if n := len(p); n > 0 && p[n-1] == '\n' {
		return p[:n-1]
	}
	return p
}
