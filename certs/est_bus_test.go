package certs_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgev2/edgev2/certs"
	certsapi "github.com/edgev2/edgev2/certs/api"
	cclient "github.com/edgev2/edgev2/certs/client"
	"github.com/edgev2/edgev2/fault"
	labest "github.com/edgev2/edgev2/internal/labcloud/est"
	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/internal/testpki"
)

// bootstrapCA is a device maker's CA whose certificates are bootstrap
// identities (IDevIDs) at the EST server.
type bootstrapCA struct {
	*testpki.CA
	file string
}

// newBootstrapCA makes the maker's CA, valid for a day (longer than the
// certificates it issues), and writes it to dir.
func newBootstrapCA(t *testing.T, dir string) *bootstrapCA {
	t.Helper()
	ca := testpki.NewCA(t, "device maker CA", func(c *x509.Certificate) { c.NotAfter = time.Now().Add(24 * time.Hour) })
	return &bootstrapCA{CA: ca, file: testpki.WritePEM(t, filepath.Join(dir, "bootstrap-ca.pem"), ca.Cert)}
}

// issue signs a bootstrap certificate for a CSR made with a key in keyd.
// provision puts a bootstrap key (in keyd) and its certificate, issued by
// b (in certd), on the device, as the factory does.
func (b *bootstrapCA) provision(t *testing.T, ctx context.Context, s *stack) {
	t.Helper()
	bk, err := s.keys.CreateKeyPair(ctx, "bootstrap", "ec-p256")
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := bk.Signer(ctx)
	csr, _ := certs.NewCSR(signer, pkix.Name{CommonName: "serial-0001"}, nil)
	if err := s.certs.Import(ctx, "bootstrap", b.issue(t, csr)); err != nil {
		t.Fatal(err)
	}
}

func (b *bootstrapCA) issue(t *testing.T, csrDER []byte) string {
	t.Helper()
	csr, err := certs.ParseCSR(csrDER)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := certs.IssueFromCA(csr, []*x509.Certificate{b.Cert}, b.Key, certs.Profile{Validity: 12 * time.Hour, PathLen: -1}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return certsapi.EncodeChain(chain[:1])
}

// startBootstrapStack starts an EST server (cfg, trusting a device maker's
// CA for bootstrap) and certd that enrolls its EST identity est-id with the
// bootstrap identity the factory put on the device, then device-id with
// est-id; est is more of the [est] table.
func startBootstrapStack(t *testing.T, cfg labest.Config, est string) (*stack, *labest.Server, []byte) {
	t.Helper()
	testenv.RequireRoot(t)
	boot := newBootstrapCA(t, testenv.SharedTempDir(t, "est"))
	cfg.BootstrapCAFiles = []string{boot.file}
	url, caPEM, srv := labest.StartTestServer(t, cfg)
	s := startESTStack(t, url, caPEM, `identity_cert = "est-id"
identity_key = "est-id"
bootstrap_identity_cert = "bootstrap"
bootstrap_identity_key = "bootstrap"
`+est+`[cert_issuance.device-id]
method = "est"
common_name = "device-1"
`)
	// The factory put a bootstrap key and certificate on the device.
	boot.provision(t, ctxT(t), s)
	return s, srv, caPEM
}

func writeShared(t *testing.T, dir, name string, data []byte) string {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCertdEnrollsOverESTWithBootstrapThenEnrolledIdentity(t *testing.T) {
	testCertdEnrollsWithBootstrap(t, false)
}

// The common deployment: the EST CA is an intermediate under a root, and
// the server trusts only the root for TLS client authentication.
func TestCertdStoresAndPresentsFullChainFromIntermediateCAWithBootstrap(t *testing.T) {
	testCertdEnrollsWithBootstrap(t, true)
}

func testCertdEnrollsWithBootstrap(t *testing.T, intermediate bool) {
	// The CA asks for P-384 keys in /csrattrs (the RFC 7030 4.5.2 example).
	s, srv, caPEM := startBootstrapStack(t, labest.Config{CSRAttrs: []string{"1.2.840.10045.2.1=1.3.132.0.34"}, Intermediate: intermediate}, "")
	ctx := ctxT(t)

	devPEM, err := s.certs.Ensure(ctx, "device-id")
	if err != nil {
		t.Fatalf("EnsureCertificate over EST: %v", err)
	}
	opensslVerify(t, devPEM, string(caPEM))
	dev := parseChain(t, devPEM)[0]
	if dev.Subject.CommonName != "device-1" {
		t.Fatalf("subject %v", dev.Subject)
	}
	if pub, ok := dev.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P384() {
		t.Fatalf("the device key is %T; the CA's csrattrs asked for P-384", dev.PublicKey)
	}
	idPEM, err := s.certs.Get(ctx, "est-id")
	if err != nil {
		t.Fatalf("the EST identity was not enrolled and stored: %v", err)
	}
	opensslVerify(t, idPEM, string(caPEM))
	checkStoredChain(t, srv, devPEM, intermediate)
	checkStoredChain(t, srv, idPEM, intermediate)
	if n := len(srv.Issued()); n != 2 {
		t.Fatalf("the EST CA issued %d certificates, want 2 (EST identity, device-id)", n)
	}

	// Renewal re-enrolls with the certificate being renewed (simplereenroll).
	if err := s.certs.Renew(ctx, "device-id"); err != nil {
		t.Fatalf("Renew over EST: %v", err)
	}
	renewedPEM, _ := s.certs.Get(ctx, "device-id")
	renewed := parseChain(t, renewedPEM)[0]
	if renewed.Equal(dev) || renewed.Subject.String() != dev.Subject.String() {
		t.Fatal("re-enrollment did not give a new certificate with the same subject")
	}
	opensslVerify(t, renewedPEM, string(caPEM))
	checkStoredChain(t, srv, renewedPEM, intermediate)
	if !strings.Contains(s.certd.Output(), "certificate renewed") {
		t.Fatal("certd did not log the renewal")
	}
}

// checkStoredChain: a stored EST chain is the leaf and, under an
// intermediate CA, that intermediate; never the root (the trust anchor).
func checkStoredChain(t *testing.T, srv *labest.Server, chainPEM string, intermediate bool) {
	t.Helper()
	chain := parseChain(t, chainPEM)
	want := 1
	if intermediate {
		want = 2
	}
	if len(chain) != want {
		t.Fatalf("stored chain has %d certificates, want %d (leaf%s, no root)", len(chain), want, map[bool]string{true: " + intermediate"}[intermediate])
	}
	if intermediate && !chain[1].Equal(srv.IssuingCA()) {
		t.Fatalf("chain[1] is %v, want the issuing intermediate", chain[1].Subject)
	}
	for _, c := range chain {
		if c.Equal(srv.CA()) {
			t.Fatal("the stored chain includes the root")
		}
	}
}

func TestCertdEnrollsOverESTWithBasicAuthAndDeferral(t *testing.T) {
	testCertdEnrollsWithBasic(t, false)
}

func TestCertdEnrollsAndRenewsFullChainFromIntermediateCAWithBasicAuth(t *testing.T) {
	testCertdEnrollsWithBasic(t, true)
}

func testCertdEnrollsWithBasic(t *testing.T, intermediate bool) {
	testenv.RequireRoot(t)
	url, caPEM, srv := labest.StartTestServer(t, labest.Config{
		Users:      []labest.User{{Name: "device-1", Password: "s3cret-pass"}},
		DeferFirst: 1, RetryAfter: 1, Intermediate: intermediate,
	})
	base := `username = "device-1"
password = "%s"

# Only configured ids are enrolled under certd's EST credentials.
[cert_issuance.basic-cert]
method = "est"
common_name = "device-1"
[cert_issuance.c]
method = "est"
common_name = "device-1"
[cert_issuance.managed]
method = "est"
common_name = "device-1"
`
	s := startESTStack(t, url, caPEM, fmt.Sprintf(base, "s3cret-pass"))
	ctx := ctxT(t)
	key, _ := s.keys.CreateKeyPair(ctx, "basic-key", "ec-p256")
	signer, _ := key.Signer(ctx)
	csr, _ := certs.NewCSR(signer, pkix.Name{CommonName: "device-1"}, nil)
	start := time.Now()
	pemText, err := s.certs.Create(ctx, "basic-cert", csr, cclient.CreateOptions{Issuer: "est"})
	if err != nil {
		t.Fatalf("CreateCertificate over EST with Basic auth: %v", err)
	}
	if time.Since(start) < time.Second {
		t.Fatal("the 202 + Retry-After: 1 deferral was not honoured")
	}
	opensslVerify(t, pemText, string(caPEM))
	checkStoredChain(t, srv, pemText, intermediate)
	if got, _ := s.certs.Get(ctx, "basic-cert"); got != pemText {
		t.Fatal("GetCertificate does not return the chain CreateCertificate returned")
	}
	// Issued by policy with Basic credentials, then renewed with
	// simplereenroll presenting the stored chain as the TLS client identity.
	managed, err := s.certs.Ensure(ctx, "managed")
	if err != nil {
		t.Fatalf("EnsureCertificate with Basic auth: %v", err)
	}
	checkStoredChain(t, srv, managed, intermediate)
	if err := s.certs.Renew(ctx, "managed"); err != nil {
		t.Fatalf("Renew (simplereenroll with the stored chain): %v", err)
	}
	renewed, _ := s.certs.Get(ctx, "managed")
	if renewed == managed {
		t.Fatal("Renew did not store a new certificate")
	}
	opensslVerify(t, renewed, string(caPEM))
	checkStoredChain(t, srv, renewed, intermediate)
	if strings.Contains(s.certd.Output(), "s3cret-pass") {
		t.Fatal("certd logged the EST password")
	}

	// Wrong password: a named error, nothing stored.
	bad := startESTStack(t, url, caPEM, fmt.Sprintf(base, "wrong"))
	k2, _ := bad.keys.CreateKeyPair(ctx, "k", "ec-p256")
	sg2, _ := k2.Signer(ctx)
	csr2, _ := certs.NewCSR(sg2, pkix.Name{CommonName: "device-1"}, nil)
	_, err = bad.certs.Create(ctx, "c", csr2, cclient.CreateOptions{Issuer: "est"})
	if !fault.Is(err, fault.NotAuthorized) {
		t.Fatalf("wrong EST password: %v, want NotAuthorized", err)
	}
	if ids, _ := bad.certs.List(ctx); len(ids) != 1 { // only the preloaded trust anchor
		t.Fatalf("a failed enrollment stored something: %v", ids)
	}
}

// TestCertdNeverRepeatsEchoedESTCredentials: an EST server (or a proxy in
// front of it) that refuses an enrollment quoting back the Basic
// credentials certd sent and the challenge password in the request: the
// caller of CreateCertificate gets NotAuthorized with the server's words,
// and neither password nor the Basic encoding is in that error or in
// certd's log.
func TestCertdNeverRepeatsEchoedESTCredentials(t *testing.T) {
	testenv.RequireRoot(t)
	const password = "Echoed-Est-Pw-5521"
	const challenge = "Echoed-Challenge-8841"
	basic := base64.StdEncoding.EncodeToString([]byte("device-1:" + password))
	dir := testenv.SharedTempDir(t, "est-echo")
	challengeFile := writeShared(t, dir, "challenge", []byte(challenge+"\n"))
	ca := testpki.NewCA(t, "echoing EST CA")
	srvKey := testpki.NewKey(t)
	srvCert := ca.Issue(t, "127.0.0.1", srvKey.Public(), &x509.Certificate{
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, pw, _ := r.BasicAuth()
		body, _ := io.ReadAll(r.Body)
		csr, _ := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(string(body)), ""))
		said := ""
		if bytes.Contains(csr, []byte(challenge)) { // what a server reads from the CSR's attribute
			said = " (challenge " + challenge + ")"
		}
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, "refused %s (password %s)%s", r.Header.Get("Authorization"), pw, said)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{testpki.TLS(srvCert, srvKey)}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	s := startESTStack(t, srv.URL, ca.PEM(), fmt.Sprintf("username = \"device-1\"\npassword = %q\nchallenge_password_file = %q\nsend_challenge_password = \"always\"\n[cert_issuance.c]\nmethod = \"est\"\ncommon_name = \"device-1\"\n", password, challengeFile))
	ctx := ctxT(t)
	// A caller's own request (no challenge password: certd cannot add one
	// to a CSR it did not sign), then certd's own, which carries it.
	key, _ := s.keys.CreateKeyPair(ctx, "k", "ec-p256")
	signer, _ := key.Signer(ctx)
	csr, _ := certs.NewCSR(signer, pkix.Name{CommonName: "device-1"}, nil)
	_, err := s.certs.Create(ctx, "c", csr, cclient.CreateOptions{Issuer: "est"})
	if !fault.Is(err, fault.NotAuthorized) || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("CreateCertificate at an EST server that refuses: %v, want NotAuthorized quoting it", err)
	}
	_, ensureErr := s.certs.Ensure(ctx, "c")
	if !fault.Is(ensureErr, fault.NotAuthorized) || !strings.Contains(ensureErr.Error(), "(challenge ") {
		t.Fatalf("EnsureCertificate at an EST server that refuses: %v, want NotAuthorized quoting it, challenge included", ensureErr)
	}
	err = fmt.Errorf("%v\n%v", err, ensureErr)
	for _, secret := range []string{password, basic, challenge} {
		if strings.Contains(err.Error(), secret) || strings.Contains(s.certd.Output(), secret) {
			t.Fatalf("the EST credentials are repeated:\nerror: %v\ncertd log:\n%s", err, s.certd.Output())
		}
	}
}

// Seed 004: the device holds the EST PKI's challenge password as a shared
// secret; the CA asks for it in /csrattrs and checks it per enrollment.
func TestCertdSendsTheChallengePasswordWhenAskedAndWrongOneIsRefused(t *testing.T) {
	testenv.RequireRoot(t)
	dir := testenv.SharedTempDir(t, "est")
	url, caPEM, srv := labest.StartTestServer(t, labest.Config{
		Users:              []labest.User{{Name: "device-1", Password: "basic-pass"}},
		ChallengePasswords: []labest.ChallengePassword{{Password: "zto-challenge-77", CommonName: "device-1", OneTime: true}},
		Intermediate:       true,
	})
	cuid, cgid := testenv.EnsureUser(t, testenv.CertsUser)
	secret := func(name, pw string) string {
		p := writeShared(t, dir, name, []byte(pw+"\n"))
		os.Chmod(p, 0o600)
		os.Chown(p, cuid, cgid)
		return p
	}
	config := func(pwFile string) string {
		return fmt.Sprintf(`username = "device-1"
password = "basic-pass"
challenge_password_file = "%s"
[cert_issuance.device-id]
method = "est"
common_name = "device-1"
`, pwFile)
	}
	ctx := ctxT(t)

	// Wrong secret: refused with the server's reason, nothing stored.
	bad := startESTStack(t, url, caPEM, config(secret("wrong-challenge", "guessed-secret")))
	_, err := bad.certs.Ensure(ctx, "device-id")
	if !fault.Is(err, fault.NotAuthorized) || !strings.Contains(fault.Message(err), "challenge password is wrong") {
		t.Fatalf("wrong challenge password: %v, want NotAuthorized naming it", err)
	}
	if _, err := bad.certs.Get(ctx, "device-id"); !fault.Is(err, fault.NotFound) {
		t.Fatalf("a refused enrollment stored a certificate: %v", err)
	}

	good := startESTStack(t, url, caPEM, config(secret("challenge", "zto-challenge-77")))
	devPEM, err := good.certs.Ensure(ctx, "device-id")
	if err != nil {
		t.Fatalf("enrollment with the challenge password: %v", err)
	}
	opensslVerify(t, devPEM, string(caPEM))
	// The one-time secret is spent: a second fresh enrollment is refused,
	// while renewal (authenticated by the certificate) goes on.
	if err := good.certs.Renew(ctx, "device-id"); err != nil {
		t.Fatalf("renewal after the one-time secret was used: %v", err)
	}
	again := startESTStack(t, url, caPEM, config(secret("challenge-2", "zto-challenge-77")))
	if _, err := again.certs.Ensure(ctx, "device-id"); !fault.Is(err, fault.NotAuthorized) || !strings.Contains(fault.Message(err), "already used") {
		t.Fatalf("reused one-time challenge password: %v, want NotAuthorized (already used)", err)
	}
	for _, s := range []*stack{bad, good, again} {
		if out := s.certd.Output(); strings.Contains(out, "zto-challenge-77") || strings.Contains(out, "guessed-secret") {
			t.Fatal("certd logged the challenge password")
		}
	}
	if n := len(srv.Issued()); n != 2 {
		t.Fatalf("the CA issued %d certificates, want 2 (enrollment, renewal)", n)
	}
}

// Seed 004: "the edge device will update its certificate when revoked ...
// by re-enrolling". The device certificate is revoked at the CA; certd
// notices on its CRL schedule without a restart, enrolls anew with a new
// key, and the new certificate is not on the CRL.
func TestCertdReenrollsWithANewKeyWhenItsCertificateIsRevoked(t *testing.T) {
	testenv.RequireRoot(t)
	dir := testenv.SharedTempDir(t, "est")
	url, caPEM, srv := labest.StartTestServer(t, labest.Config{
		Users: []labest.User{{Name: "device-1", Password: "basic-pass"}}, Intermediate: true,
	})
	s := startESTStack(t, url, caPEM, `username = "device-1"
password = "basic-pass"
crl_check_interval = "1s"
[cert_issuance.device-id]
method = "est"
common_name = "device-1"
[cert_issuance.device-id.auto_renew]
threshold = "80%"
`)
	ctx := ctxT(t)
	firstPEM, err := s.certs.Ensure(ctx, "device-id")
	if err != nil {
		t.Fatal(err)
	}
	first := parseChain(t, firstPEM)[0]
	if len(first.CRLDistributionPoints) == 0 {
		t.Fatal("the EST CA put no CRL distribution point in the certificate")
	}
	if err := srv.Revoke(first.SerialNumber); err != nil {
		t.Fatal(err)
	}
	var next *x509.Certificate
	var nextPEM string
	testenv.Eventually(t, 90*time.Second, func() bool {
		nextPEM, err = s.certs.Get(ctx, "device-id")
		if err == nil && !parseChain(t, nextPEM)[0].Equal(first) {
			next = parseChain(t, nextPEM)[0]
		}
		return next != nil
	}, "certd did not re-enroll the revoked certificate; its log:\n%s", s.certd)
	if next.Subject.String() != first.Subject.String() {
		t.Fatalf("re-enrolled subject %v, want %v", next.Subject, first.Subject)
	}
	if pub, _ := x509.MarshalPKIXPublicKey(next.PublicKey); string(pub) == string(first.RawSubjectPublicKeyInfo) {
		t.Fatal("the re-enrolled certificate kept the key of the revoked one")
	}
	opensslVerify(t, nextPEM, string(caPEM))
	checkStoredChain(t, srv, nextPEM, true)
	// Against the CA's CRL with openssl: the old one is revoked, the new one is not.
	crlDER := fetchForTest(t, first.CRLDistributionPoints[0], caPEM)
	crlFile := writeShared(t, dir, "est.crl", crlDER)
	rootFile := writeShared(t, dir, "root.pem", caPEM)
	chainFile := writeShared(t, dir, "chain-old.pem", []byte(firstPEM))
	verify := func(leafPEM string) (string, error) {
		leafFile := writeShared(t, dir, "leaf.pem", []byte(certsapi.EncodeChain(parseChain(t, leafPEM)[:1])))
		out, err := exec.Command("openssl", "verify", "-crl_check", "-CRLfile", crlFile, "-CAfile", rootFile,
			"-untrusted", chainFile, leafFile).CombinedOutput()
		return string(out), err
	}
	if out, err := verify(firstPEM); err == nil || !strings.Contains(out, "revoked") {
		t.Fatalf("openssl says the revoked certificate is fine: %v %s", err, out)
	}
	if out, err := verify(nextPEM); err != nil {
		t.Fatalf("openssl verify -crl_check of the re-enrolled certificate: %v %s", err, out)
	}
	if !strings.Contains(s.certd.Output(), "certificate revoked by its CA") {
		t.Fatal("certd did not log the revocation")
	}
}

func fetchForTest(t *testing.T, url string, caPEM []byte) []byte {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b
}

// Both the device certificate and the EST identity revoked: certd drops the
// identity, enrolls a new one with the bootstrap identity (the one that
// still holds) and a new key, then the device certificate with it.
func TestCertdFallsBackToTheBootstrapIdentityWhenTheESTIdentityIsRevoked(t *testing.T) {
	s, srv, caPEM := startBootstrapStack(t, labest.Config{Intermediate: true}, "crl_check_interval = \"1s\"\n")
	ctx := ctxT(t)
	devPEM, err := s.certs.Ensure(ctx, "device-id")
	if err != nil {
		t.Fatal(err)
	}
	idPEM, _ := s.certs.Get(ctx, "est-id")
	dev, id := parseChain(t, devPEM)[0], parseChain(t, idPEM)[0]
	for _, c := range []*x509.Certificate{dev, id} {
		if err := srv.Revoke(c.SerialNumber); err != nil {
			t.Fatal(err)
		}
	}
	var newDev, newID *x509.Certificate
	testenv.Eventually(t, 90*time.Second, func() bool {
		d, err1 := s.certs.Get(ctx, "device-id")
		i, err2 := s.certs.Get(ctx, "est-id")
		if err1 == nil && err2 == nil && !parseChain(t, d)[0].Equal(dev) && !parseChain(t, i)[0].Equal(id) {
			newDev, newID = parseChain(t, d)[0], parseChain(t, i)[0]
			opensslVerify(t, d, string(caPEM))
			opensslVerify(t, i, string(caPEM))
		}
		return newDev != nil
	}, "certd did not re-enroll both; its log:\n%s", s.certd)
	if string(newID.RawSubjectPublicKeyInfo) == string(id.RawSubjectPublicKeyInfo) || string(newDev.RawSubjectPublicKeyInfo) == string(dev.RawSubjectPublicKeyInfo) {
		t.Fatal("a re-enrolled certificate kept the revoked one's key")
	}
}
