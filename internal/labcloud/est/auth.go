package est

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/http"
	"time"
)

// wwwAuthenticate is sent with every 401 (RFC 7030 3.2.3).
const wwwAuthenticate = `Basic realm="edgev2-labcloud EST"`

// caller is who made an EST request: a Basic user, a TLS client
// certificate, or both.
type caller struct {
	user string            // HTTP Basic user name; "" if none
	cert *x509.Certificate // verified TLS client certificate; nil if none
	// enrolled: cert was issued by this EST CA; bootstrap: by a bootstrap CA.
	enrolled, bootstrap bool
}

// id names the caller in logs and as the key of deferral counts.
func (c caller) id() string {
	switch {
	case c.cert != nil:
		sum := sha256.Sum256(c.cert.Raw)
		return "cert:" + hex.EncodeToString(sum[:8]) + "(" + c.cert.Subject.String() + ")"
	case c.user != "":
		return "user:" + c.user
	}
	return "anonymous"
}

// httpError is a refusal whose message is safe to send as text/plain.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) *httpError {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

// authenticate finds the caller from the TLS client certificate and/or
// HTTP Basic credentials. A certificate that is present but unacceptable
// (revoked, expired, unknown issuer) is refused even with good Basic
// credentials. No credentials at all give 401.
func (s *Server) authenticate(r *http.Request) (caller, *httpError) {
	var c caller
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		if herr := s.classifyClientCert(&c, r.TLS.PeerCertificates); herr != nil {
			return c, herr
		}
	}
	if name, pw, ok := r.BasicAuth(); ok {
		if !s.checkPassword(name, pw) {
			return c, errorf(http.StatusUnauthorized, "wrong user name or password")
		}
		c.user = name
	} else if r.Header.Get("Authorization") != "" {
		return c, errorf(http.StatusUnauthorized, "only HTTP Basic authentication is supported")
	}
	if c.cert == nil && c.user == "" {
		return c, errorf(http.StatusUnauthorized, "authentication required: a TLS client certificate or HTTP Basic credentials")
	}
	return c, nil
}

func (s *Server) classifyClientCert(c *caller, chain []*x509.Certificate) *httpError {
	leaf := chain[0]
	now := s.now()
	if now.After(leaf.NotAfter) {
		return errorf(http.StatusForbidden, "the client certificate expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(leaf.NotBefore) {
		return errorf(http.StatusForbidden, "the client certificate is not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	inter := x509.NewCertPool()
	for _, ic := range chain[1:] {
		inter.AddCert(ic)
	}
	opts := x509.VerifyOptions{Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	opts.Roots = s.estPool
	if _, err := leaf.Verify(opts); err == nil {
		if s.ca.isRevoked(leaf.SerialNumber) {
			return errorf(http.StatusForbidden, "the client certificate (serial %s) has been revoked", leaf.SerialNumber.Text(16))
		}
		c.cert, c.enrolled = leaf, true
		return nil
	}
	if s.bootstrapPool != nil {
		opts.Roots = s.bootstrapPool
		if _, err := leaf.Verify(opts); err == nil {
			c.cert, c.bootstrap = leaf, true
			return nil
		}
	}
	return errorf(http.StatusForbidden, "the client certificate was issued neither by this EST CA nor by a bootstrap CA")
}

// checkPassword compares against every user in constant time; hashing
// first makes the comparison independent of the lengths too.
func (s *Server) checkPassword(name, pw string) bool {
	n := sha256.Sum256([]byte(name))
	p := sha256.Sum256([]byte(pw))
	match := 0
	for _, u := range s.cfg.Users {
		un := sha256.Sum256([]byte(u.Name))
		up := sha256.Sum256([]byte(u.Password))
		match |= subtle.ConstantTimeCompare(n[:], un[:]) & subtle.ConstantTimeCompare(p[:], up[:])
	}
	return match == 1
}

// authorize applies the bootstrap/enrolled split to one operation.
func authorize(op string, c caller) *httpError {
	switch op {
	case opSimpleEnroll:
		return nil // Basic users, bootstrap and enrolled identities
	case opSimpleReenroll:
		if c.enrolled {
			return nil
		}
		if c.bootstrap {
			return errorf(http.StatusForbidden, "a bootstrap certificate may only call simpleenroll; simplereenroll needs a certificate issued by this EST CA")
		}
		return errorf(http.StatusForbidden, "simplereenroll requires TLS client authentication with the certificate being renewed")
	case opServerKeyGen:
		if c.user != "" || c.enrolled {
			return nil
		}
		return errorf(http.StatusForbidden, "a bootstrap certificate may only call simpleenroll; serverkeygen needs HTTP Basic credentials or a certificate issued by this EST CA")
	}
	return errorf(http.StatusForbidden, "operation %q is not allowed", op)
}
