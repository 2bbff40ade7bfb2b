package est

import (
	"crypto/x509"
	"encoding/base64"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/edgev2/edgev2/certs"
	certsest "github.com/edgev2/edgev2/certs/est"
	"github.com/edgev2/edgev2/internal/testpki"
)

// csrWithChallenge is a base64 CSR for cn carrying challengePassword pw,
// made the way certd makes it.
func csrWithChallenge(t *testing.T, cn, pw string) []byte {
	t.Helper()
	key := newKey(t)
	der := testpki.CSR(t, key, cn)
	if pw != "" {
		var err error
		if der, err = certs.WithChallengePassword(der, key, pw); err != nil {
			t.Fatal(err)
		}
	}
	return []byte(base64.StdEncoding.EncodeToString(der))
}

func TestChallengePasswordsAreAskedForAndCheckedPerEnrollment(t *testing.T) {
	boot := newTestCA(t, "maker")
	bootFile := t.TempDir() + "/boot.pem"
	if err := os.WriteFile(bootFile, boot.PEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	l := startLab(t, Config{Users: []User{alice}, BootstrapCAFiles: []string{bootFile}, ChallengePasswords: []ChallengePassword{
		{Password: "once-only", OneTime: true},
		{Password: "dev-7-secret", CommonName: "dev-7"},
	}})
	// /csrattrs asks for it.
	r := l.do(t, nil, http.MethodGet, PathPrefix+"csrattrs", "", "", "", nil)
	attrs, err := certsest.ParseCSRAttrs(r.body)
	if err != nil || !attrs.ChallengePasswordRequested() {
		t.Fatalf("csrattrs %d %s: %v; want challengePassword asked for", r.status, r.body, err)
	}
	bootKey := newKey(t)
	bootCert := tlsCert(boot.Issue(t, "serial-1", bootKey.Public(), nil), bootKey)
	tests := []struct {
		name   string
		cert   bool // authenticate with the bootstrap certificate, else Basic
		cn, pw string
		status int
		reason string
	}{
		{"missing", false, "dev-1", "", http.StatusForbidden, "requires a challenge password"},
		{"wrong", false, "dev-1", "guess", http.StatusForbidden, "wrong"},
		{"one-time, first use", true, "dev-1", "once-only", http.StatusOK, ""},
		{"one-time, reused", false, "dev-2", "once-only", http.StatusForbidden, "already used"},
		{"per-device, other device", false, "dev-8", "dev-7-secret", http.StatusForbidden, "not the one for common name"},
		{"per-device", true, "dev-7", "dev-7-secret", http.StatusOK, ""},
		{"per-device, again", false, "dev-7", "dev-7-secret", http.StatusOK, ""},
	}
	for _, tt := range tests {
		var cert = bootCert
		user, pass := "", ""
		if !tt.cert {
			cert, user, pass = nil, "alice", "s3cret"
		}
		r := l.enroll(t, cert, "simpleenroll", user, pass, csrWithChallenge(t, tt.cn, tt.pw))
		if r.status != tt.status || !strings.Contains(string(r.body), tt.reason) {
			t.Errorf("%s: %d %s, want %d %q", tt.name, r.status, r.body, tt.status, tt.reason)
		}
		if strings.Contains(string(r.body), tt.pw) && tt.pw != "" {
			t.Errorf("%s: the reply echoes the password", tt.name)
		}
	}
	// An identity enrolled here enrolls and re-enrolls without one.
	key := newKey(t)
	der, _ := certs.WithChallengePassword(testpki.CSR(t, key, "dev-7"), key, "dev-7-secret")
	enrolled := tlsCert(issuedCert(t, l.enroll(t, nil, "simpleenroll", "alice", "s3cret", []byte(base64.StdEncoding.EncodeToString(der)))), key)
	issuedCert(t, l.enroll(t, enrolled, "simpleenroll", "", "", csrB64(t, newKey(t), "dev-9")))
	issuedCert(t, l.enroll(t, enrolled, "simplereenroll", "", "", csrB64(t, newKey(t), "dev-7")))
}

func TestOneTimeChallengePasswordStaysUsedAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Users: []User{alice}, ChallengePasswords: []ChallengePassword{{Password: "once", OneTime: true}}}
	a, err := NewServer(cfg, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := parseCSR(csrWithChallenge(t, "d", "once"))
	if herr := a.challenges.verify(csr); herr != nil {
		t.Fatal(herr)
	}
	b, err := NewServer(cfg, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if herr := b.challenges.verify(csr); herr == nil || !strings.Contains(herr.msg, "already used") {
		t.Fatalf("after a restart: %v, want already used", herr)
	}
}

func FuzzCSRChallengePassword(f *testing.F) {
	f.Add(testpki.CSR(f, newKey(f), "d"))
	f.Fuzz(func(t *testing.T, der []byte) {
		csr, err := x509.ParseCertificateRequest(der)
		if err != nil {
			return
		}
		csrChallengePassword(csr)
	})
}
