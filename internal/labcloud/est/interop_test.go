package est

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgev2/edgev2/internal/testenv"
)

// These tests prove interoperability with real EST clients: curl carries the
// requests, openssl makes CSRs and reads every answer.

func requireTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"curl", "openssl", "base64", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, tool, err.Error())
		}
	}
}

// shell runs one bash command in dir with EST, LABCLOUD set.
func shell(t *testing.T, dir string, l *lab, cmd string) (string, error) {
	t.Helper()
	c := exec.Command("bash", "-c", cmd)
	c.Dir = dir
	c.Env = append(os.Environ(), "EST="+l.url+strings.TrimSuffix(PathPrefix, "/"), "LABCLOUD="+l.url)
	out, err := c.CombinedOutput()
	return string(out), err
}

func mustShell(t *testing.T, dir string, l *lab, cmd string) string {
	t.Helper()
	out, err := shell(t, dir, l, cmd)
	if err != nil {
		t.Fatalf("%s\n  failed: %v\n%s", cmd, err, out)
	}
	return out
}

// curlLab starts an in-process server and a work dir holding ca.pem and a
// device key + CSR (device.key, device.csr.b64) for cn.
func curlLab(t *testing.T, cfg Config, cn string) (*lab, string) {
	requireTools(t)
	l := startLab(t, cfg)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), l.caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	mustShell(t, dir, l, "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout device.key -subj /CN="+cn+" -outform DER | base64 > device.csr.b64")
	return l, dir
}

const curlEnroll = `curl -sS --fail-with-body --cacert ca.pem -u alice:s3cret -H 'Content-Type: application/pkcs10' --data-binary @device.csr.b64 "$EST/simpleenroll" | base64 -d | openssl pkcs7 -inform DER -print_certs -out device.pem`

func TestCurlDeferredEnrollGets202ThenCertificate(t *testing.T) {
	l, dir := curlLab(t, Config{Users: []User{alice}, DeferFirst: 1, RetryAfter: 2}, "slow-device")
	out := mustShell(t, dir, l, `curl -sS -i --cacert ca.pem -u alice:s3cret -H 'Content-Type: application/pkcs10' --data-binary @device.csr.b64 "$EST/simpleenroll"`)
	if !strings.Contains(out, " 202") || !strings.Contains(strings.ToLower(out), "retry-after: 2") {
		t.Fatalf("first request:\n%s\nwant 202 with Retry-After: 2", out)
	}
	mustShell(t, dir, l, curlEnroll)
	if out := mustShell(t, dir, l, "openssl verify -CAfile ca.pem device.pem"); !strings.Contains(out, "device.pem: OK") {
		t.Fatal(out)
	}
}

func TestCurlRejectedSubjectGets403(t *testing.T) {
	l, dir := curlLab(t, Config{Users: []User{alice}, RejectSubjects: []string{"evil-*"}}, "evil-device")
	out, err := shell(t, dir, l, `curl -sS --fail-with-body --cacert ca.pem -u alice:s3cret -H 'Content-Type: application/pkcs10' --data-binary @device.csr.b64 "$EST/simpleenroll"`)
	if err == nil || !strings.Contains(out, `policy refuses common name "evil-device"`) {
		t.Fatalf("%v: %s; want a 403 policy refusal", err, out)
	}
}

func TestCurlGarbageAndHugeBodiesAreRefused(t *testing.T) {
	l, dir := curlLab(t, Config{Users: []User{alice}}, "d")
	for _, tc := range []struct{ body, want string }{
		{`printf '<html><body>not a CSR</body></html>' > body`, "400"},
		{`head -c 100000 /dev/zero | base64 > body`, "413"},
		{`openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout k.pem -subj /CN=pem -out body`, "400"}, // PEM, not base64 DER
	} {
		mustShell(t, dir, l, tc.body)
		out := mustShell(t, dir, l, `curl -sS -o /dev/null -w '%{http_code}\n' --cacert ca.pem -u alice:s3cret -H 'Content-Type: application/pkcs10' --data-binary @body "$EST/simpleenroll"`)
		if strings.TrimSpace(out) != tc.want {
			t.Errorf("%s: status %s, want %s", tc.body, out, tc.want)
		}
	}
}

func TestCurlCSRAttrsIs204WithoutAttributes(t *testing.T) {
	l, dir := curlLab(t, Config{}, "d")
	if out := mustShell(t, dir, l, `curl -sS -o /dev/null -w '%{http_code}\n' --cacert ca.pem "$EST/csrattrs"`); strings.TrimSpace(out) != "204" {
		t.Fatalf("status %s, want 204", out)
	}
}

func TestCurlRevokedCertIsOnCRLAndRefused(t *testing.T) {
	l, dir := curlLab(t, Config{Users: []User{alice}}, "doomed-device")
	mustShell(t, dir, l, curlEnroll)
	issued := l.srv.Issued()
	if len(issued) != 1 {
		t.Fatalf("%d issued", len(issued))
	}
	serial := issued[0].SerialNumber
	if err := l.srv.Revoke(serial); err != nil {
		t.Fatal(err)
	}
	out := mustShell(t, dir, l, `curl -sS --fail-with-body --cacert ca.pem -o est.crl "$LABCLOUD/crl" && openssl crl -inform DER -in est.crl -noout -text`)
	if !strings.Contains(out, "Serial Number: "+strings.ToUpper(fmt.Sprintf("%032x", serial))) &&
		!strings.Contains(out, "Serial Number: "+strings.ToUpper(serial.Text(16))) {
		t.Errorf("CRL does not list %X:\n%s", serial, out)
	}
	out, err := shell(t, dir, l, "openssl crl -inform DER -in est.crl -out est-crl.pem && openssl verify -crl_check -CAfile ca.pem -CRLfile est-crl.pem device.pem")
	if err == nil || !strings.Contains(out, "certificate revoked") {
		t.Errorf("openssl verify -crl_check = %v: %s; want certificate revoked", err, out)
	}
	out, err = shell(t, dir, l, `curl -sS --fail-with-body --cacert ca.pem --cert device.pem --key device.key -H 'Content-Type: application/pkcs10' --data-binary @device.csr.b64 "$EST/simplereenroll"`)
	if err == nil || !strings.Contains(out, "has been revoked") {
		t.Errorf("reenroll with the revoked cert = %v: %s; want refused", err, out)
	}
}

// TestDocTourWorksWithCurlAndOpenSSL runs every "$ " command of docs/est.md
// in one bash session, against the edgev2-labcloud command built here.
func TestDocTourWorksWithCurlAndOpenSSL(t *testing.T) {
	testenv.LabcloudDocTour(t, "docs/est.md", "est", 20, "curl", "openssl", "base64")
}
