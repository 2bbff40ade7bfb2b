// Package est is edgev2-labcloud's EST certificate authority: a local CA
// served over Enrollment over Secure Transport (RFC 7030, RFC 8951).
package est

import (
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/edgev2/edgev2/internal/labcloud/pemfile"
)

// EST operations (RFC 7030 3.2.2).
const (
	opCACerts        = "cacerts"
	opSimpleEnroll   = "simpleenroll"
	opSimpleReenroll = "simplereenroll"
	opServerKeyGen   = "serverkeygen"
	opCSRAttrs       = "csrattrs"
	opFullCMC        = "fullcmc"
)

// PathPrefix is where EST lives (RFC 7030 3.2.2, RFC 8615).
const PathPrefix = "/.well-known/est/"

// MaxBodyBytes caps request bodies; larger ones get 413.
const MaxBodyBytes = 64 << 10

// Server is the EST CA: a local CA plus the RFC 7030 HTTP handler.
type Server struct {
	cfg      Config
	log      *slog.Logger
	ca       *ca
	csrAttrs []byte // DER CsrAttrs; nil: 204

	estPool       *x509.CertPool
	bootstrapCAs  []*x509.Certificate
	bootstrapPool *x509.CertPool // nil without bootstrap CAs

	challenges *challenges // nil: no challenge password required
	adminToken string

	mu       sync.Mutex
	attempts map[string]int // enroll requests per caller, for defer_first

	now func() time.Time
}

// NewServer opens (or on first start makes) the CA in stateDir and
// returns the EST server for cfg. A nil logger discards logs.
func NewServer(cfg Config, stateDir string, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: logger, attempts: map[string]int{}, now: time.Now}
	var err error
	attrs := cfg.CSRAttrs
	if len(cfg.ChallengePasswords) > 0 && !slices.Contains(attrs, "challengePassword") && !slices.Contains(attrs, "1.2.840.113549.1.9.7") {
		attrs = append(slices.Clone(attrs), "challengePassword")
	}
	if s.csrAttrs, err = encodeCSRAttrs(attrs); err != nil {
		return nil, &ConfigError{Table: "est", Key: "csrattrs", Problem: err.Error()}
	}
	if s.ca, err = openCA(stateDir, cfg.CA, cfg.Intermediate, s.now()); err != nil {
		return nil, fmt.Errorf("open EST CA in %s: %w", stateDir, err)
	}
	if s.adminToken, err = loadOrCreateToken(stateDir); err != nil {
		return nil, fmt.Errorf("EST admin token in %s: %w", stateDir, err)
	}
	if len(cfg.ChallengePasswords) > 0 {
		if s.challenges, err = openChallenges(stateDir, cfg.ChallengePasswords); err != nil {
			return nil, fmt.Errorf("open EST challenge passwords in %s: %w", stateDir, err)
		}
	}
	s.estPool = x509.NewCertPool()
	s.estPool.AddCert(s.ca.anchor())
	for i, f := range cfg.BootstrapCAFiles {
		certs, err := pemfile.ReadCertificates(f)
		if err != nil {
			return nil, &ConfigError{Table: "est", Key: fmt.Sprintf("bootstrap_ca_files[%d]", i), Problem: err.Error(), Fix: "name a PEM file of CA certificates"}
		}
		if s.bootstrapPool == nil {
			s.bootstrapPool = x509.NewCertPool()
		}
		for _, c := range certs {
			s.bootstrapPool.AddCert(c)
			s.bootstrapCAs = append(s.bootstrapCAs, c)
		}
	}
	logger.Info("EST CA ready", "ca", s.ca.cert.Subject.String(), "state", stateDir,
		"users", len(cfg.Users), "bootstrap_cas", len(s.bootstrapCAs), "validity", time.Duration(cfg.Validity).String())
	return s, nil
}

// CA returns the root CA certificate, the trust anchor of issued certificates.
func (s *Server) CA() *x509.Certificate { return s.ca.anchor() }

// IssuingCA returns the CA certificate that signs issued certificates and
// CRLs: the intermediate with [est] intermediate, else the root.
func (s *Server) IssuingCA() *x509.Certificate { return s.ca.cert }

// CAPEM returns the root CA certificate in PEM.
func (s *Server) CAPEM() []byte { return s.ca.certPEM() }

// BaseHost is the host name of the configured base URL (no port), "" without one.
func (s *Server) BaseHost() string {
	if u, err := url.Parse(s.cfg.BaseURL); err == nil {
		return u.Hostname()
	}
	return ""
}

// Issued returns every certificate issued over EST, oldest first.
func (s *Server) Issued() []*x509.Certificate { return s.ca.issued() }

// Revoke revokes an issued certificate: it appears on /crl and is refused
// as a TLS client certificate. Unknown serials are fault.NotFound.
func (s *Server) Revoke(serial *big.Int) error {
	if err := s.ca.revoke(serial, s.now()); err != nil {
		return err
	}
	s.log.Info("certificate revoked", "serial", serial.Text(16))
	return nil
}

// Handler serves /.well-known/est/[<label>/]<operation> and /crl.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(PathPrefix, s.serveEST)
	mux.HandleFunc("/crl", s.serveCRL)
	mux.HandleFunc(AdminRevokePath, s.serveRevoke)
	return mux
}

// responder writes one response and logs it as one event.
type responder struct {
	w      http.ResponseWriter
	log    *slog.Logger
	r      *http.Request
	op     string
	client string
}

func (rs *responder) fail(e *httpError) {
	if e.status == http.StatusUnauthorized {
		rs.w.Header().Set("WWW-Authenticate", wwwAuthenticate)
	}
	rs.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	rs.w.Header().Set("X-Content-Type-Options", "nosniff")
	rs.w.WriteHeader(e.status)
	io.WriteString(rs.w, e.msg+"\n")
	rs.log.Info("EST request refused", "op", rs.op, "path", rs.r.URL.Path, "client", rs.client, "remote", rs.r.RemoteAddr, "status", e.status, "reason", e.msg)
}

func (rs *responder) internal(err error) {
	rs.log.Error("EST request failed", "op", rs.op, "path", rs.r.URL.Path, "client", rs.client, "err", err)
	rs.fail(errorf(http.StatusInternalServerError, "internal error; the labcloud log has the details"))
}

func (rs *responder) ok(status int, contentType string, body []byte, attrs ...any) {
	if contentType != "" {
		rs.w.Header().Set("Content-Type", contentType)
	}
	rs.w.WriteHeader(status)
	rs.w.Write(body)
	rs.log.Info("EST request", append([]any{"op", rs.op, "path", rs.r.URL.Path, "client", rs.client, "remote", rs.r.RemoteAddr, "status", status}, attrs...)...)
}

// splitESTPath returns the label ("" for none) and operation of an EST path.
func splitESTPath(p string) (label, op string, ok bool) {
	rest, found := strings.CutPrefix(p, PathPrefix)
	if !found {
		return "", "", false
	}
	parts := strings.Split(rest, "/")
	switch len(parts) {
	case 1:
		if parts[0] != "" {
			return "", parts[0], true
		}
	case 2:
		if parts[0] != "" && parts[1] != "" {
			return parts[0], parts[1], true
		}
	}
	return "", "", false
}

func (s *Server) labelAllowed(label string) bool {
	if len(s.cfg.Labels) == 0 {
		return label == "" || validLabel(label)
	}
	if label == "" {
		return false
	}
	for _, l := range s.cfg.Labels {
		if l == label {
			return true
		}
	}
	return false
}

func (s *Server) serveEST(w http.ResponseWriter, r *http.Request) {
	label, op, ok := splitESTPath(r.URL.Path)
	rs := &responder{w: w, log: s.log, r: r, op: op}
	if !ok {
		rs.fail(errorf(http.StatusNotFound, "not an EST path; use %s[<label>/]{cacerts,simpleenroll,simplereenroll,serverkeygen,csrattrs}", PathPrefix))
		return
	}
	if !s.labelAllowed(label) {
		rs.fail(errorf(http.StatusNotFound, "unknown EST label %q", label))
		return
	}
	method := http.MethodPost
	switch op {
	case opCACerts, opCSRAttrs:
		method = http.MethodGet
	case opSimpleEnroll, opSimpleReenroll, opServerKeyGen:
	case opFullCMC:
		rs.fail(errorf(http.StatusNotImplemented, "fullcmc is not supported by this EST server"))
		return
	default:
		rs.fail(errorf(http.StatusNotFound, "unknown EST operation %q", op))
		return
	}
	if r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
		w.Header().Set("Allow", method)
		rs.fail(errorf(http.StatusMethodNotAllowed, "%s takes %s", op, method))
		return
	}
	switch op {
	case opCACerts:
		s.serveCACerts(rs)
	case opCSRAttrs:
		s.serveCSRAttrs(rs)
	default:
		s.serveEnroll(rs, op, label)
	}
}

// serveCACerts answers RFC 7030 4.1: the CA chain (issuing CA, then the
// root) as base64 certs-only. No authentication: clients bootstrap their
// trust anchor from it.
func (s *Server) serveCACerts(rs *responder) {
	der, err := certsOnly(s.ca.chain()...)
	if err != nil {
		rs.internal(err)
		return
	}
	rs.ok(http.StatusOK, mediaCertsOnly, encodeBase64(der))
}

// serveCSRAttrs answers RFC 7030 4.5: 204 when nothing is asked for.
func (s *Server) serveCSRAttrs(rs *responder) {
	if s.csrAttrs == nil {
		rs.ok(http.StatusNoContent, "", nil)
		return
	}
	rs.ok(http.StatusOK, mediaCSRAttrs, encodeBase64(s.csrAttrs))
}

func (s *Server) serveCRL(w http.ResponseWriter, r *http.Request) {
	rs := &responder{w: w, log: s.log, r: r, op: "crl"}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", http.MethodGet)
		rs.fail(errorf(http.StatusMethodNotAllowed, "the CRL takes GET"))
		return
	}
	der, err := s.ca.crl(s.now())
	if err != nil {
		rs.internal(err)
		return
	}
	rs.ok(http.StatusOK, mediaCRL, der)
}
