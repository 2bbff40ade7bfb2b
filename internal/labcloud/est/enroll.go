package est

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// serveEnroll handles simpleenroll, simplereenroll (RFC 7030 4.2) and
// serverkeygen (4.4): authenticate, authorize, read and check the CSR,
// apply policy and deferral, issue.
func (s *Server) serveEnroll(rs *responder, op, label string) {
	c, herr := s.authenticate(rs.r)
	rs.client = c.id()
	if herr == nil {
		herr = authorize(op, c)
	}
	if herr != nil {
		rs.fail(herr)
		return
	}
	csr, herr := readCSR(rs.w, rs.r)
	if herr != nil {
		rs.fail(herr)
		return
	}
	if herr := s.checkCSR(op, csr, c); herr != nil {
		rs.fail(herr)
		return
	}
	if s.deferRequest(rs.client) {
		rs.w.Header().Set("Retry-After", strconv.Itoa(s.cfg.RetryAfter))
		rs.ok(http.StatusAccepted, "text/plain; charset=utf-8",
			[]byte("the request is pending approval; send the same request again after "+strconv.Itoa(s.cfg.RetryAfter)+" seconds\n"),
			"subject", csr.Subject.String())
		return
	}
	// Checked only for a request that will be answered now, so a deferred
	// (202) request does not use up a one-time secret.
	if s.challenges != nil && op != opSimpleReenroll && !c.enrolled {
		if herr := s.challenges.verify(csr); herr != nil {
			rs.fail(herr)
			return
		}
	}
	p := issueParams{
		publicKey:  csr.PublicKey,
		rawSubject: csr.RawSubject,
		san:        sanExtension(csr.Extensions),
		validity:   time.Duration(s.cfg.Validity),
		record:     true,
	}
	if p.san != nil && len(csr.Subject.Names) == 0 {
		p.san.Critical = true // RFC 5280 4.2.1.6: SAN is critical when the subject is empty
	}
	if s.cfg.BaseURL != "" {
		p.crlURL = strings.TrimSuffix(s.cfg.BaseURL, "/") + "/crl"
	}
	if op == opServerKeyGen {
		s.serveKeyGen(rs, p)
		return
	}
	cert, der, err := s.issueCertsOnly(p)
	if err != nil {
		rs.internal(err)
		return
	}
	rs.ok(http.StatusOK, mediaCertsOnly, encodeBase64(der),
		"label", label, "subject", cert.Subject.String(), "serial", cert.SerialNumber.Text(16), "not_after", cert.NotAfter.UTC().Format(time.RFC3339))
}

// readCSR reads a capped application/pkcs10 body and parses it.
func readCSR(w http.ResponseWriter, r *http.Request) (*x509.CertificateRequest, *httpError) {
	// RFC 7030 4.2.1: the body is application/pkcs10; a POST that does not
	// say so is refused like any other media type.
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return nil, errorf(http.StatusUnsupportedMediaType, "no Content-Type; send the CSR as %s (base64 of the DER)", mediaPKCS10)
	}
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != mediaPKCS10 {
		return nil, errorf(http.StatusUnsupportedMediaType, "Content-Type is %q; send the CSR as %s (base64 of the DER)", ct, mediaPKCS10)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, errorf(http.StatusRequestEntityTooLarge, "the request body is larger than %d bytes", MaxBodyBytes)
		}
		return nil, errorf(http.StatusBadRequest, "cannot read the request body: %v", err)
	}
	csr, err := parseCSR(body)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "%v", err)
	}
	return csr, nil
}

// checkCSR applies key, subject and policy rules, and for simplereenroll
// RFC 7030 4.2.2: Subject and SubjectAltName equal the certificate renewed.
func (s *Server) checkCSR(op string, csr *x509.CertificateRequest, c caller) *httpError {
	if op != opServerKeyGen {
		if herr := checkPublicKey(csr.PublicKey); herr != nil {
			return herr
		}
	}
	if len(csr.Subject.Names) == 0 && sanExtension(csr.Extensions) == nil {
		return errorf(http.StatusBadRequest, "the CSR has neither a subject nor a subjectAltName")
	}
	cn := csr.Subject.CommonName
	for _, pat := range s.cfg.RejectSubjects {
		if ok, _ := path.Match(pat, cn); ok {
			return errorf(http.StatusForbidden, "policy refuses common name %q (matches reject_subjects %q)", cn, pat)
		}
	}
	if op == opSimpleReenroll {
		if !sameSubject(csr, c.cert) {
			return errorf(http.StatusBadRequest, "simplereenroll: the CSR subject %q differs from the subject %q of the certificate being renewed (RFC 7030 4.2.2)", csr.Subject.String(), c.cert.Subject.String())
		}
		if !sameSAN(csr, c.cert) {
			return errorf(http.StatusBadRequest, "simplereenroll: the CSR subjectAltName differs from that of the certificate being renewed (RFC 7030 4.2.2)")
		}
	}
	return nil
}

func checkPublicKey(pub any) *httpError {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n >= 2048 && n <= 8192 {
			return nil
		}
		return errorf(http.StatusBadRequest, "RSA keys must have 2048 to 8192 bits, the CSR's has %d", k.N.BitLen())
	case ed25519.PublicKey:
		return nil
	}
	return errorf(http.StatusBadRequest, "unsupported public key in the CSR; use EC P-256/P-384/P-521, RSA 2048+ or Ed25519")
}

func sanExtension(exts []pkix.Extension) *pkix.Extension {
	for _, e := range exts {
		if e.Id.Equal(oidSubjectAltName) {
			e := e
			return &e
		}
	}
	return nil
}

func sameSubject(csr *x509.CertificateRequest, cert *x509.Certificate) bool {
	return bytes.Equal(csr.RawSubject, cert.RawSubject) || csr.Subject.String() == cert.Subject.String()
}

// sameSAN compares the encoded extensions, then the parsed names as sets
// (a client may list the same names in another order).
func sameSAN(csr *x509.CertificateRequest, cert *x509.Certificate) bool {
	a, b := sanExtension(csr.Extensions), sanExtension(cert.Extensions)
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	if bytes.Equal(a.Value, b.Value) {
		return true
	}
	set := func(dns, email, ips, uris []string) []string {
		var out []string
		for _, v := range dns {
			out = append(out, "dns:"+strings.ToLower(v))
		}
		for _, v := range email {
			out = append(out, "email:"+v)
		}
		for _, v := range ips {
			out = append(out, "ip:"+v)
		}
		for _, v := range uris {
			out = append(out, "uri:"+v)
		}
		slices.Sort(out)
		return out
	}
	var csrIPs, certIPs, csrURIs, certURIs []string
	for _, ip := range csr.IPAddresses {
		csrIPs = append(csrIPs, ip.String())
	}
	for _, ip := range cert.IPAddresses {
		certIPs = append(certIPs, ip.String())
	}
	for _, u := range csr.URIs {
		csrURIs = append(csrURIs, u.String())
	}
	for _, u := range cert.URIs {
		certURIs = append(certURIs, u.String())
	}
	return slices.Equal(set(csr.DNSNames, csr.EmailAddresses, csrIPs, csrURIs), set(cert.DNSNames, cert.EmailAddresses, certIPs, certURIs))
}

// deferRequest counts the caller's enroll requests and reports whether
// this one is among the first defer_first, to be answered 202.
func (s *Server) deferRequest(client string) bool {
	if s.cfg.DeferFirst == 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attempts[client]++
	return s.attempts[client] <= s.cfg.DeferFirst
}

// serveKeyGen answers RFC 7030 4.4.2: multipart/mixed with the
// unencrypted PKCS#8 key, then the certs-only certificate.
func (s *Server) serveKeyGen(rs *responder, p issueParams) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		rs.internal(err)
		return
	}
	p.publicKey = &key.PublicKey
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		rs.internal(err)
		return
	}
	cert, p7, err := s.issueCertsOnly(p)
	if err != nil {
		rs.internal(err)
		return
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, part := range []struct {
		contentType string
		der         []byte
	}{{mediaPKCS8, keyDER}, {mediaCertsOnly, p7}} {
		h := textproto.MIMEHeader{}
		h.Set("Content-Type", part.contentType)
		// RFC 8951 makes this header optional; RFC 7030-era clients look for it.
		h.Set("Content-Transfer-Encoding", "base64")
		pw, err := mw.CreatePart(h)
		if err != nil {
			rs.internal(err)
			return
		}
		pw.Write(encodeBase64(part.der))
	}
	if err := mw.Close(); err != nil {
		rs.internal(err)
		return
	}
	rs.ok(http.StatusOK, "multipart/mixed; boundary="+mw.Boundary(), body.Bytes(),
		"subject", cert.Subject.String(), "serial", cert.SerialNumber.Text(16), "key", "server-generated ec-p256")
}

// issueCertsOnly issues the certificate p describes and encodes it as
// an enrollment answers it (application/pkcs7-mime; smime-type=certs-only).
func (s *Server) issueCertsOnly(p issueParams) (*x509.Certificate, []byte, error) {
	cert, err := s.ca.issue(p, s.now())
	if err != nil {
		return nil, nil, err
	}
	der, err := certsOnly(cert)
	if err != nil {
		return nil, nil, err
	}
	return cert, der, nil
}
