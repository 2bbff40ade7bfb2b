package est

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"math/big"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgev2/edgev2/fault"
)

var alice = User{Name: "alice", Password: "s3cret"}

func TestCACertsIsBase64CertsOnlyWithTheCA(t *testing.T) {
	l := startLab(t, Config{})
	for _, path := range []string{PathPrefix + "cacerts", PathPrefix + "any-label/cacerts"} {
		r := l.do(t, nil, http.MethodGet, path, "", "", "", nil)
		if r.status != http.StatusOK || r.header.Get("Content-Type") != mediaCertsOnly {
			t.Fatalf("%s: %d %q: %s", path, r.status, r.header.Get("Content-Type"), r.body)
		}
		if r.header.Get("Content-Transfer-Encoding") != "" {
			t.Errorf("%s: Content-Transfer-Encoding sent; RFC 8951 drops it", path)
		}
		der, err := decodeBase64(r.body)
		if err != nil {
			t.Fatal(err)
		}
		certs, err := parseCertsOnly(der)
		if err != nil || len(certs) != 1 || !certs[0].Equal(l.srv.CA()) {
			t.Fatalf("%s: certs %v, %v; want the CA alone", path, certs, err)
		}
	}
}

func TestSimpleEnrollWithBasicAuthIssuesClientCert(t *testing.T) {
	l := startLab(t, Config{Users: []User{alice}, Validity: Duration(90 * time.Second)})
	key := newKey(t)
	start := time.Now()
	cert := issuedCert(t, l.enroll(t, nil, "simpleenroll", "alice", "s3cret", csrB64(t, key, "device-1", "device-1.local")))

	if cert.Subject.CommonName != "device-1" || len(cert.DNSNames) != 1 || cert.DNSNames[0] != "device-1.local" {
		t.Errorf("subject %v SANs %v; want copied from the CSR", cert.Subject, cert.DNSNames)
	}
	if !cert.PublicKey.(*ecdsa.PublicKey).Equal(&key.PublicKey) {
		t.Error("certificate is not for the CSR's key")
	}
	if cert.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("KeyUsage = %v, want digitalSignature only for EC", cert.KeyUsage)
	}
	if len(cert.ExtKeyUsage) != 2 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth || cert.ExtKeyUsage[1] != x509.ExtKeyUsageServerAuth {
		t.Errorf("ExtKeyUsage = %v, want clientAuth, serverAuth", cert.ExtKeyUsage)
	}
	if len(cert.SubjectKeyId) == 0 || !bytes.Equal(cert.AuthorityKeyId, l.srv.CA().SubjectKeyId) {
		t.Errorf("SKID %x AKID %x; want both, AKID = CA's SKID %x", cert.SubjectKeyId, cert.AuthorityKeyId, l.srv.CA().SubjectKeyId)
	}
	if want := []string{l.url + "/crl"}; len(cert.CRLDistributionPoints) != 1 || cert.CRLDistributionPoints[0] != want[0] {
		t.Errorf("CRL DP = %v, want %v", cert.CRLDistributionPoints, want)
	}
	if d := cert.NotAfter.Sub(start); d < 85*time.Second || d > 95*time.Second {
		t.Errorf("valid for %v after issue, want the configured 90s", d)
	}
	if cert.SerialNumber.BitLen() < 64 || cert.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %x is not a random 128-bit number", cert.SerialNumber)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: l.pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("issued certificate does not verify against the CA: %v", err)
	}
	if got := l.srv.Issued(); len(got) != 1 || !got[0].Equal(cert) {
		t.Errorf("Issued() = %d certs, want the one issued", len(got))
	}
}

func TestRSACSRGetsKeyEnciphermentToo(t *testing.T) {
	l := startLab(t, Config{Users: []User{alice}})
	key, err := rsa.GenerateKey(randReader{}, 2048)
	if err != nil {
		t.Fatal(err)
	}
	cert := issuedCert(t, l.enroll(t, nil, "simpleenroll", "alice", "s3cret", csrB64(t, key, "rsa-device")))
	if cert.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment {
		t.Errorf("KeyUsage = %v, want digitalSignature|keyEncipherment", cert.KeyUsage)
	}
}

func TestIssuedCertNeverOutlivesTheCA(t *testing.T) {
	l := startLab(t, Config{Users: []User{alice}, CA: CAConfig{Validity: Duration(time.Hour)}, Validity: Duration(1000 * time.Hour)})
	cert := issuedCert(t, l.enroll(t, nil, "simpleenroll", "alice", "s3cret", csrB64(t, newKey(t), "d")))
	if cert.NotAfter.After(l.srv.CA().NotAfter) {
		t.Errorf("notAfter %v is beyond the CA's %v", cert.NotAfter, l.srv.CA().NotAfter)
	}
}

func TestEnrollWithoutCredentialsGets401WithBasicChallenge(t *testing.T) {
	l := startLab(t, Config{Users: []User{alice}})
	csr := csrB64(t, newKey(t), "d")
	for _, tc := range []struct{ name, user, pass string }{
		{"no credentials", "", ""},
		{"wrong password", "alice", "wrong"},
		{"unknown user", "mallory", "s3cret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := l.enroll(t, nil, "simpleenroll", tc.user, tc.pass, csr)
			if r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") != `Basic realm="edgev2-labcloud EST"` {
				t.Fatalf("%d %q: %s; want 401 with the Basic challenge", r.status, r.header.Get("WWW-Authenticate"), r.body)
			}
			if !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
				t.Errorf("Content-Type %q, want text/plain", r.header.Get("Content-Type"))
			}
		})
	}
}

func TestMalformedRequestsAreRefusedWithAReason(t *testing.T) {
	l := startLab(t, Config{Users: []User{alice}})
	good := csrB64(t, newKey(t), "d")
	der, _ := base64.StdEncoding.DecodeString(string(good))
	tampered := bytes.Clone(der)
	tampered[len(tampered)-5] ^= 0xff // inside the signature
	for _, tc := range []struct {
		name, contentType string
		body              []byte
		status            int
		reason            string
	}{
		{"empty body", mediaPKCS10, nil, 400, "empty"},
		{"HTML", mediaPKCS10, []byte("<html><body>hello</body></html>"), 400, "HTML"},
		{"garbage", mediaPKCS10, []byte("this is not base64 at all!"), 400, "not valid base64"},
		{"PEM instead of base64 DER", mediaPKCS10, []byte("-----BEGIN CERTIFICATE REQUEST-----\n" + string(good) + "\n-----END CERTIFICATE REQUEST-----\n"), 400, "PEM"},
		{"base64 of garbage", mediaPKCS10, []byte(base64.StdEncoding.EncodeToString([]byte("hello world"))), 400, "not a DER PKCS#10"},
		{"bad signature", mediaPKCS10, []byte(base64.StdEncoding.EncodeToString(tampered)), 400, "signature"},
		{"wrong Content-Type", "application/x-www-form-urlencoded", good, 415, "application/pkcs10"},
		{"huge body", mediaPKCS10, bytes.Repeat([]byte("QUFB"), MaxBodyBytes), 413, "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := l.do(t, nil, http.MethodPost, PathPrefix+"simpleenroll", "alice", "s3cret", tc.contentType, tc.body)
			if r.status != tc.status || !strings.Contains(string(r.body), tc.reason) {
				t.Fatalf("%d %q, want %d saying %q", r.status, r.body, tc.status, tc.reason)
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("Content-Type %q, want text/plain", ct)
			}
		})
	}
	if n := len(l.srv.Issued()); n != 0 {
		t.Errorf("%d certificates issued for malformed requests", n)
	}
}

func TestEnrollAcceptsBase64WithWhitespace(t *testing.T) {
	l := startLab(t, Config{Users: []User{alice}})
	good := string(csrB64(t, newKey(t), "d"))
	wrapped := ""
	for len(good) > 60 {
		wrapped += good[:60] + "\r\n"
		good = good[60:]
	}
	wrapped += good + "\n"
	issuedCert(t, l.do(t, nil, http.MethodPost, PathPrefix+"simpleenroll", "alice", "s3cret", mediaPKCS10, []byte(wrapped)))
}

func TestEnrollWithoutContentTypeIs415(t *testing.T) {
	l := startLab(t, Config{Users: []User{alice}})
	for _, op := range []string{"simpleenroll", "simplereenroll", "serverkeygen"} {
		key := newKey(t)
		var cert *tls.Certificate
		if op == "simplereenroll" {
			c := issuedCert(t, l.enroll(t, nil, "simpleenroll", "alice", "s3cret", csrB64(t, key, "d")))
			cert = tlsCert(c, key)
		}
		r := l.do(t, cert, http.MethodPost, PathPrefix+op, "alice", "s3cret", "", csrB64(t, key, "d"))
		if r.status != http.StatusUnsupportedMediaType || !strings.Contains(string(r.body), "Content-Type") {
			t.Errorf("%s without Content-Type: %d %s, want 415 naming Content-Type", op, r.status, r.body)
		}
	}
	if n := len(l.srv.Issued()); n != 1 {
		t.Fatalf("the CA issued %d certificates, want only the one made for the reenroll case", n)
	}
}

func TestWrongMethodAndUnknownPathsAreRefused(t *testing.T) {
	l := startLab(t, Config{Labels: []string{"tenant-a"}})
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{http.MethodPost, PathPrefix + "tenant-a/cacerts", 405},
		{http.MethodGet, PathPrefix + "tenant-a/simpleenroll", 405},
		{http.MethodGet, PathPrefix + "tenant-a/nosuchop", 404},
		{http.MethodGet, PathPrefix + "tenant-b/cacerts", 404},
		{http.MethodGet, PathPrefix + "cacerts", 404}, // labels configured: a label is required
		{http.MethodGet, PathPrefix + "a/b/cacerts", 404},
		{http.MethodPost, PathPrefix + "tenant-a/fullcmc", 501},
		{http.MethodGet, PathPrefix + "tenant-a/cacerts", 200},
	} {
		if r := l.do(t, nil, tc.method, tc.path, "", "", "", nil); r.status != tc.status {
			t.Errorf("%s %s = %d %s, want %d", tc.method, tc.path, r.status, r.body, tc.status)
		}
	}
}

func TestDeferFirstAnswers202WithRetryAfterThenIssues(t *testing.T) {
	l := startLab(t, Config{Users: []User{alice}, DeferFirst: 2, RetryAfter: 7})
	csr := csrB64(t, newKey(t), "slow-device")
	for i := 0; i < 2; i++ {
		r := l.enroll(t, nil, "simpleenroll", "alice", "s3cret", csr)
		if r.status != http.StatusAccepted || r.header.Get("Retry-After") != "7" {
			t.Fatalf("attempt %d: %d Retry-After %q, want 202 and 7", i+1, r.status, r.header.Get("Retry-After"))
		}
	}
	issuedCert(t, l.enroll(t, nil, "simpleenroll", "alice", "s3cret", csr))
}

func TestRejectSubjectsRefusesMatchingCommonNames(t *testing.T) {
	l := startLab(t, Config{Users: []User{alice}, RejectSubjects: []string{"evil-*"}})
	r := l.enroll(t, nil, "simpleenroll", "alice", "s3cret", csrB64(t, newKey(t), "evil-device"))
	if r.status != http.StatusForbidden || !strings.Contains(string(r.body), "evil-*") {
		t.Fatalf("%d %s, want 403 naming the pattern", r.status, r.body)
	}
	issuedCert(t, l.enroll(t, nil, "simpleenroll", "alice", "s3cret", csrB64(t, newKey(t), "good-device")))
}

func TestCSRAttrsIs204WhenNoneAndDERWhenConfigured(t *testing.T) {
	l := startLab(t, Config{})
	if r := l.do(t, nil, http.MethodGet, PathPrefix+"csrattrs", "", "", "", nil); r.status != http.StatusNoContent || len(r.body) != 0 {
		t.Fatalf("%d %q, want 204 and no body", r.status, r.body)
	}
	l = startLab(t, Config{CSRAttrs: []string{"ecdsa-with-SHA256", "1.2.840.10045.2.1=1.3.132.0.34", "challengePassword"}})
	r := l.do(t, nil, http.MethodGet, PathPrefix+"csrattrs", "", "", "", nil)
	if r.status != http.StatusOK || r.header.Get("Content-Type") != mediaCSRAttrs {
		t.Fatalf("%d %q", r.status, r.header.Get("Content-Type"))
	}
	der, err := decodeBase64(r.body)
	if err != nil {
		t.Fatal(err)
	}
	// RFC 7030 4.5.2 example shape: OID, Attribute{ecPublicKey, {secp384r1}}, OID.
	const wantHex = "3029" + "06082a8648ce3d040302" + "3012" + "06072a8648ce3d0201" + "3107" + "06052b81040022" + "06092a864886f70d010907"
	if got := hexString(der); got != wantHex {
		t.Errorf("csrattrs DER = %s, want %s", got, wantHex)
	}
}

func TestServerKeyGenReturnsMultipartPKCS8KeyAndCert(t *testing.T) {
	l := startLab(t, Config{Users: []User{alice}})
	r := l.enroll(t, nil, "serverkeygen", "alice", "s3cret", csrB64(t, newKey(t), "keygen-device", "kg.local"))
	if r.status != http.StatusOK {
		t.Fatalf("%d: %s", r.status, r.body)
	}
	mt, params, err := mime.ParseMediaType(r.header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" || params["boundary"] == "" {
		t.Fatalf("Content-Type %q: %v", r.header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(bytes.NewReader(r.body), params["boundary"])
	var parts []struct {
		ct  string
		der []byte
	}
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		der, err := decodeBase64(b)
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, struct {
			ct  string
			der []byte
		}{p.Header.Get("Content-Type"), der})
	}
	if len(parts) != 2 || parts[0].ct != mediaPKCS8 || parts[1].ct != mediaCertsOnly {
		t.Fatalf("parts %v, want application/pkcs8 then certs-only", parts)
	}
	key, err := x509.ParsePKCS8PrivateKey(parts[0].der)
	if err != nil {
		t.Fatalf("key part: %v", err)
	}
	certs, err := parseCertsOnly(parts[1].der)
	if err != nil || len(certs) != 1 {
		t.Fatalf("cert part: %v", err)
	}
	if !key.(*ecdsa.PrivateKey).PublicKey.Equal(certs[0].PublicKey) || certs[0].Subject.CommonName != "keygen-device" {
		t.Errorf("certificate %v does not hold the generated key or the CSR subject", certs[0].Subject)
	}
}

func TestBootstrapCertMayEnrollButNotReenroll(t *testing.T) {
	boot := newTestCA(t, "manufacturer CA")
	caFile := filepath.Join(t.TempDir(), "boot.pem")
	os.WriteFile(caFile, boot.PEM(), 0o600)
	l := startLab(t, Config{BootstrapCAFiles: []string{caFile}})
	idevKey := newKey(t)
	idev := tlsCert(boot.Issue(t, "device-7", idevKey.Public(), nil), idevKey)

	ldevKey := newKey(t)
	ldev := issuedCert(t, l.enroll(t, idev, "simpleenroll", "", "", csrB64(t, ldevKey, "device-7")))

	r := l.enroll(t, idev, "simplereenroll", "", "", csrB64(t, newKey(t), "device-7"))
	if r.status != http.StatusForbidden || !strings.Contains(string(r.body), "bootstrap") {
		t.Errorf("reenroll with the bootstrap cert: %d %s, want 403", r.status, r.body)
	}
	if r := l.enroll(t, idev, "serverkeygen", "", "", csrB64(t, newKey(t), "device-7")); r.status != http.StatusForbidden {
		t.Errorf("serverkeygen with the bootstrap cert: %d %s, want 403", r.status, r.body)
	}

	// The enrolled identity renews itself.
	newKey2 := newKey(t)
	renewed := issuedCert(t, l.enroll(t, tlsCert(ldev, ldevKey), "simplereenroll", "", "", csrB64(t, newKey2, "device-7")))
	if renewed.Subject.String() != ldev.Subject.String() || renewed.SerialNumber.Cmp(ldev.SerialNumber) == 0 {
		t.Errorf("renewed %v serial %x", renewed.Subject, renewed.SerialNumber)
	}
}

func TestReenrollRequiresSameSubjectAndSAN(t *testing.T) {
	l := startLab(t, Config{Users: []User{alice}})
	key := newKey(t)
	cert := issuedCert(t, l.enroll(t, nil, "simpleenroll", "alice", "s3cret", csrB64(t, key, "dev", "dev.local")))
	me := tlsCert(cert, key)
	for _, tc := range []struct {
		name   string
		csr    []byte
		user   string
		cert   bool
		status int
		reason string
	}{
		{"other subject", csrB64(t, newKey(t), "someone-else", "dev.local"), "", true, 400, "subject"},
		{"other SAN", csrB64(t, newKey(t), "dev", "other.local"), "", true, 400, "subjectAltName"},
		{"no SAN", csrB64(t, newKey(t), "dev"), "", true, 400, "subjectAltName"},
		{"Basic auth only", csrB64(t, newKey(t), "dev", "dev.local"), "alice", false, 403, "TLS client authentication"},
		{"same subject and SAN", csrB64(t, newKey(t), "dev", "dev.local"), "", true, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c *tls.Certificate
			if tc.cert {
				c = me
			}
			r := l.enroll(t, c, "simplereenroll", tc.user, "s3cret", tc.csr)
			if r.status != tc.status || !strings.Contains(string(r.body), tc.reason) {
				t.Fatalf("%d %s, want %d saying %q", r.status, r.body, tc.status, tc.reason)
			}
		})
	}
}

func TestRevokedCertIsListedOnCRLAndRefused(t *testing.T) {
	l := startLab(t, Config{Users: []User{alice}})
	key := newKey(t)
	cert := issuedCert(t, l.enroll(t, nil, "simpleenroll", "alice", "s3cret", csrB64(t, key, "dev")))
	if err := l.srv.Revoke(cert.SerialNumber); err != nil {
		t.Fatal(err)
	}
	if err := l.srv.Revoke(cert.SerialNumber); err != nil {
		t.Errorf("revoking twice: %v", err)
	}
	if err := l.srv.Revoke(big.NewInt(12345)); !fault.Is(err, fault.NotFound) {
		t.Errorf("revoking an unknown serial: %v, want NotFound", err)
	}
	r := l.do(t, nil, http.MethodGet, "/crl", "", "", "", nil)
	if r.status != http.StatusOK || r.header.Get("Content-Type") != mediaCRL {
		t.Fatalf("/crl: %d %q", r.status, r.header.Get("Content-Type"))
	}
	crl, err := x509.ParseRevocationList(r.body)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(l.srv.CA()); err != nil {
		t.Errorf("CRL signature: %v", err)
	}
	if len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].SerialNumber.Cmp(cert.SerialNumber) != 0 {
		t.Errorf("CRL lists %v, want serial %x", crl.RevokedCertificateEntries, cert.SerialNumber)
	}
	r = l.enroll(t, tlsCert(cert, key), "simplereenroll", "", "", csrB64(t, newKey(t), "dev"))
	if r.status != http.StatusForbidden || !strings.Contains(string(r.body), "revoked") {
		t.Errorf("reenroll with the revoked cert: %d %s, want 403", r.status, r.body)
	}
}

func TestExpiredClientCertIsRefused(t *testing.T) {
	l := startLab(t, Config{Users: []User{alice}, Validity: Duration(time.Hour)})
	key := newKey(t)
	cert := issuedCert(t, l.enroll(t, nil, "simpleenroll", "alice", "s3cret", csrB64(t, key, "dev")))
	// The TLS handshake checks expiry against the real clock, so drive the
	// handler directly with the certificate and a clock two hours ahead.
	l.srv.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	req := httptest.NewRequest(http.MethodPost, PathPrefix+"simplereenroll", bytes.NewReader(csrB64(t, newKey(t), "dev")))
	req.Header.Set("Content-Type", mediaPKCS10)
	req.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}
	w := httptest.NewRecorder()
	l.srv.Handler().ServeHTTP(w, req)
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "expired") {
		t.Fatalf("%d %s, want 403 saying expired", w.Code, w.Body)
	}
}

func TestClientCertFromUnknownCAIsRefused(t *testing.T) {
	l := startLab(t, Config{Users: []User{alice}})
	other := newTestCA(t, "stranger")
	key := newKey(t)
	req := httptest.NewRequest(http.MethodPost, PathPrefix+"simpleenroll", bytes.NewReader(csrB64(t, key, "dev")))
	req.SetBasicAuth("alice", "s3cret")
	req.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{other.Issue(t, "dev", key.Public(), nil)}}
	w := httptest.NewRecorder()
	l.srv.Handler().ServeHTTP(w, req)
	if w.Code != http.StatusForbidden {
		t.Fatalf("%d %s, want 403 even with good Basic credentials", w.Code, w.Body)
	}
}

func TestCAPersistsAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	s1, err := NewServer(Config{}, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := s1.ca.issue(issueParams{publicKey: &newKey(t).PublicKey, rawSubject: s1.CA().RawSubject, validity: time.Hour, record: true}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := s1.Revoke(cert.SerialNumber); err != nil {
		t.Fatal(err)
	}
	s2, err := NewServer(Config{CA: CAConfig{CommonName: "ignored on restart"}}, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !s2.CA().Equal(s1.CA()) {
		t.Error("restart made a new CA")
	}
	if len(s2.Issued()) != 1 || !s2.ca.isRevoked(cert.SerialNumber) {
		t.Error("restart lost the index or the revocation")
	}
	for _, f := range []string{caKeyFile, caCertFile, indexFile} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Errorf("%s: %v", f, err)
		} else if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f, st.Mode().Perm())
		}
	}
}

func TestLogsNeverContainPasswordsOrKeys(t *testing.T) {
	var logs bytes.Buffer
	s, err := NewServer(Config{Users: []User{{Name: "alice", Password: "hunter2-secret"}}}, t.TempDir(), slogTo(&logs))
	if err != nil {
		t.Fatal(err)
	}
	h := s.Handler()
	for _, pw := range []string{"hunter2-secret", "wrong-secret"} {
		req := httptest.NewRequest(http.MethodPost, PathPrefix+"serverkeygen", bytes.NewReader(csrB64(t, newKey(t), "dev")))
		req.SetBasicAuth("alice", pw)
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	if strings.Contains(logs.String(), "secret") || strings.Contains(logs.String(), "PRIVATE") || strings.Contains(logs.String(), "MII") {
		t.Errorf("logs leak secrets:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "op=serverkeygen") {
		t.Errorf("logs miss the requests:\n%s", logs.String())
	}
}

func TestIntermediateCAIssuesUnderTheRootAndCACertsReturnsBoth(t *testing.T) {
	l := startLab(t, Config{Users: []User{alice}, Intermediate: true})
	root, inter := l.srv.CA(), l.srv.IssuingCA()
	if root.Equal(inter) || !bytes.Equal(root.RawSubject, root.RawIssuer) || inter.CheckSignatureFrom(root) != nil {
		t.Fatalf("want an intermediate signed by a self-signed root; root %v, issuing %v", root.Subject, inter.Subject)
	}
	if !inter.IsCA || !inter.MaxPathLenZero || inter.MaxPathLen != 0 {
		t.Errorf("the intermediate is not a CA with path length 0: %+v", inter.BasicConstraintsValid)
	}
	r := l.do(t, nil, http.MethodGet, PathPrefix+"cacerts", "", "", "", nil)
	der, err := decodeBase64(r.body)
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseCertsOnly(der)
	if err != nil || len(got) != 2 || !got[0].Equal(inter) || !got[1].Equal(root) {
		t.Fatalf("cacerts: %d certificates, %v; want the intermediate then the root", len(got), err)
	}
	key := newKey(t)
	cert := issuedCert(t, l.enroll(t, nil, "simpleenroll", "alice", "s3cret", csrB64(t, key, "dev")))
	if err := cert.CheckSignatureFrom(inter); err != nil {
		t.Fatalf("the issued certificate is not signed by the intermediate: %v", err)
	}
	// A server trusting only the root: the leaf alone is not enough (Go's
	// client does not even send it, as its issuer is not in the CA list).
	r = l.enroll(t, tlsCert(cert, key), "simplereenroll", "", "", csrB64(t, newKey(t), "dev"))
	if r.status != http.StatusForbidden && r.status != http.StatusUnauthorized {
		t.Fatalf("reenroll presenting the leaf alone: %d %s, want 401 or 403", r.status, r.body)
	}
	withChain := &tls.Certificate{Certificate: [][]byte{cert.Raw, inter.Raw}, PrivateKey: key, Leaf: cert}
	renewed := issuedCert(t, l.enroll(t, withChain, "simplereenroll", "", "", csrB64(t, newKey(t), "dev")))
	if err := renewed.CheckSignatureFrom(inter); err != nil {
		t.Fatal(err)
	}
	// The CRL is signed by the issuing CA, and revocation is enforced.
	if err := l.srv.Revoke(renewed.SerialNumber); err != nil {
		t.Fatal(err)
	}
	r = l.do(t, nil, http.MethodGet, "/crl", "", "", "", nil)
	crl, err := x509.ParseRevocationList(r.body)
	if err != nil || crl.CheckSignatureFrom(inter) != nil {
		t.Fatalf("CRL: %v; want one signed by the intermediate", err)
	}
}

func TestIntermediateCAPersistsAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	a, err := NewServer(Config{Intermediate: true}, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewServer(Config{Intermediate: true}, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !a.CA().Equal(b.CA()) || !a.IssuingCA().Equal(b.IssuingCA()) {
		t.Fatal("a restart made a new root or intermediate")
	}
	// Switching the option off later keeps the CA the state holds.
	c, err := NewServer(Config{}, dir, nil)
	if err != nil || !c.IssuingCA().Equal(a.IssuingCA()) || !c.CA().Equal(a.CA()) {
		t.Fatalf("restart without intermediate: %v", err)
	}
}

func TestAdminRevokeNeedsTheTokenAndPutsTheSerialOnTheCRL(t *testing.T) {
	l := startLab(t, Config{Users: []User{alice}})
	cert := issuedCert(t, l.enroll(t, nil, "simpleenroll", "alice", "s3cret", csrB64(t, newKey(t), "dev")))
	revoke := func(token, body string) reply {
		req, _ := http.NewRequest(http.MethodPost, l.url+AdminRevokePath, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := l.client(nil).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return reply{resp.StatusCode, resp.Header, b}
	}
	serial := cert.SerialNumber.Text(16)
	for _, tok := range []string{"", "guess", l.srv.adminToken + "x"} {
		if r := revoke(tok, serial); r.status != http.StatusUnauthorized {
			t.Fatalf("token %q: %d %s, want 401", tok, r.status, r.body)
		}
	}
	if l.srv.ca.isRevoked(cert.SerialNumber) {
		t.Fatal("revoked without the token")
	}
	if r := revoke(l.srv.adminToken, "not-hex"); r.status != http.StatusBadRequest {
		t.Fatalf("bad serial: %d", r.status)
	}
	if r := revoke(l.srv.adminToken, "abcdef"); r.status != http.StatusNotFound {
		t.Fatalf("unknown serial: %d", r.status)
	}
	if r := revoke(l.srv.adminToken, strings.ToUpper(serial)+"\n"); r.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	r := l.do(t, nil, http.MethodGet, "/crl", "", "", "", nil)
	crl, err := x509.ParseRevocationList(r.body)
	if err != nil || len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].SerialNumber.Cmp(cert.SerialNumber) != 0 {
		t.Fatalf("CRL after the admin revoke: %v", err)
	}
}
