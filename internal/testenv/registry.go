package testenv

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/distribution/reference"

	"github.com/edgev2/edgev2/internal/testpki"
)

// registryStartTimeout bounds how long docker-registry may take to answer.
const registryStartTimeout = 15 * time.Second

// Registry is Debian's docker-registry (the CNCF distribution registry)
// serving HTTPS on 127.0.0.1 with a self-signed certificate and htpasswd
// basic authentication, its storage in a temporary directory.
type Registry struct {
	Addr     string // host:port, the registry part of image references
	CAFile   string // PEM of the certificate that signs (and is) the server's
	CAPEM    []byte // the same certificate
	User     string
	Password string

	dir  string
	proc *process
	out  *capBuffer
}

// StartRegistry runs docker-registry as a child process and waits until
// it answers /v2/ with a basic-auth challenge. Only user with password
// may read or write. Cleanup stops it. A missing docker-registry or
// htpasswd (apache2-utils) is Missing.
func StartRegistry(t TB, user, password string) *Registry {
	t.Helper()
	// The registry accepts only bcrypt hashes; htpasswd makes them
	// without a Go dependency.
	bins := lookPrograms(t, program{"docker-registry", "docker-registry"}, program{"htpasswd", "apache2-utils"})
	if bins == nil {
		return nil
	}
	bin, htpasswdBin := bins[0], bins[1]
	if user == "" || password == "" || strings.ContainsAny(user, ":\n") {
		t.Fatalf("StartRegistry: need a user without ':' and a password")
	}
	dir := SharedTempDir(t, "registry")
	r := &Registry{
		CAFile:   filepath.Join(dir, "ca.pem"),
		User:     user,
		Password: password,
		dir:      dir,
		out:      &capBuffer{},
	}
	keyFile := filepath.Join(dir, "key.pem")
	r.CAPEM = writeSelfSigned(t, r.CAFile, keyFile)
	htpasswdFile := filepath.Join(dir, "htpasswd")
	writeHtpasswd(t, htpasswdBin, htpasswdFile, user, password)

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(r.CAPEM)
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	defer client.CloseIdleConnections()

	t.Cleanup(func() {
		if r.proc != nil {
			r.proc.stop(syscall.SIGTERM, 5*time.Second)
		}
		logIfFailed(t, "docker-registry", r.out)
	})
	// The port is picked by binding :0 and released for the registry;
	// another process may take it in between, so a lost race is retried.
	for attempt := 1; ; attempt++ {
		r.Addr = freeLoopbackAddr(t)
		config := filepath.Join(dir, "config.yml")
		if err := os.WriteFile(config, []byte(registryConfig(r.Addr, dir, keyFile, r.CAFile, htpasswdFile)), 0o600); err != nil {
			t.Fatalf("write registry config: %v", err)
		}
		cmd := exec.Command(bin, "serve", config)
		cmd.Env = []string{basePath}
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		fmt.Fprintf(r.out, "--- testenv: starting docker-registry on %s ---\n", r.Addr)
		p, err := startProcess(cmd, r.out)
		if err != nil {
			t.Fatalf("start docker-registry: %v", err)
		}
		r.proc = p
		err = r.waitReady(client, p)
		if err == nil {
			return r
		}
		p.stop(syscall.SIGTERM, 5*time.Second)
		if attempt < 3 && strings.Contains(r.out.String(), "address already in use") {
			continue
		}
		t.Fatalf("docker-registry on %s: %v; output:\n%s", r.Addr, err, r.out)
	}
}

// waitReady polls /v2/ until the registry answers 401 with a Basic
// challenge, which proves TLS and authentication are both in place.
func (r *Registry) waitReady(client *http.Client, p *process) error {
	var last error
	exited := false
	ready := WaitFor(registryStartTimeout, func() bool {
		select {
		case <-p.done:
			exited = true
			return true
		default:
		}
		resp, err := client.Get("https://" + r.Addr + "/v2/")
		if err != nil {
			last = err
			return false
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized && strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic") {
			return true
		}
		last = fmt.Errorf("GET /v2/ answered %s, want 401 with a Basic challenge", resp.Status)
		return false
	})
	switch {
	case exited:
		return fmt.Errorf("exited with code %d", p.exitCode())
	case !ready:
		return fmt.Errorf("not ready within %v: %v", registryStartTimeout, last)
	}
	return nil
}

// Push pushes image ref of namespace in c (e.g.
// "example.com/edgev2/busybox:1") to the registry under the same path and
// tag, and returns the reference it has there ("127.0.0.1:PORT/edgev2/busybox:1").
func (r *Registry) Push(t TB, c *Containerd, namespace, ref string) string {
	t.Helper()
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		t.Fatalf("Push: bad reference %q: %v", ref, err)
	}
	remote := r.Addr + "/" + reference.Path(named)
	if tagged, ok := named.(reference.Tagged); ok {
		remote += ":" + tagged.Tag()
	} else {
		remote += ":latest"
	}
	// ctr takes the password on its command line only (it reads a
	// prompted one from a terminal); acceptable for a test password.
	_, stderr, code := c.run("-n", namespace, "images", "push",
		"--user", r.User+":"+r.Password, "--hosts-dir", r.hostsDir(t), remote, ref)
	if code != 0 {
		t.Fatalf("ctr images push %s %s: exit %d: %s", remote, ref, code, strings.ReplaceAll(stderr, r.Password, "<password>"))
	}
	return remote
}

// hostsDir writes a containerd hosts directory for the registry: without
// one, ctr talks plain HTTP to a loopback host with a port and would not
// verify a certificate if it used HTTPS.
func (r *Registry) hostsDir(t TB) string {
	t.Helper()
	dir := filepath.Join(r.dir, "hosts.d")
	hostDir := filepath.Join(dir, r.Addr)
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		t.Fatalf("make hosts dir: %v", err)
	}
	server := "https://" + r.Addr
	conf := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\", \"push\"]\n  ca = %q\n", server, server, r.CAFile)
	if err := os.WriteFile(filepath.Join(hostDir, "hosts.toml"), []byte(conf), 0o644); err != nil {
		t.Fatalf("write hosts.toml: %v", err)
	}
	return dir
}

func registryConfig(addr, dir, keyFile, certFile, htpasswdFile string) string {
	secret := make([]byte, 16)
	rand.Read(secret)
	return fmt.Sprintf(`version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: %q
  delete:
    enabled: true
http:
  addr: %q
  secret: %q
  tls:
    certificate: %q
    key: %q
auth:
  htpasswd:
    realm: edgev2-test
    path: %q
`, filepath.Join(dir, "data"), addr, hex.EncodeToString(secret), certFile, keyFile, htpasswdFile)
}

// writeHtpasswd makes a bcrypt htpasswd file, the password going to
// htpasswd on stdin, not on its command line.
func writeHtpasswd(t TB, bin, path, user, password string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-n", "-B", "-i", user)
	cmd.Env = []string{basePath}
	cmd.Stdin = strings.NewReader(password + "\n")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("htpasswd: %v: %s", err, stderr.String())
	}
	line := strings.TrimSpace(string(out))
	if !strings.HasPrefix(line, user+":$2") {
		t.Fatalf("htpasswd made no bcrypt entry: %q", line)
	}
	if err := os.WriteFile(path, []byte(line+"\n"), 0o600); err != nil {
		t.Fatalf("write htpasswd: %v", err)
	}
}

// writeSelfSigned writes a self-signed ECDSA certificate for 127.0.0.1
// and localhost (which is also its own CA) and its key, and returns the
// certificate's PEM.
func writeSelfSigned(t TB, certFile, keyFile string) []byte {
	t.Helper()
	key := testpki.NewKey(t)
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatalf("serial: %v", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "edgev2 test registry"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	certPEM := testpki.PEM(testpki.Sign(t, tmpl, tmpl, key.Public(), key))
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		t.Fatalf("write %s: %v", certFile, err)
	}
	if err := os.WriteFile(keyFile, testpki.PKCS8PEM(t, key), 0o600); err != nil {
		t.Fatalf("write %s: %v", keyFile, err)
	}
	return certPEM
}

// freeLoopbackAddr returns 127.0.0.1:PORT with a port nobody listened on
// a moment ago.
func freeLoopbackAddr(t TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
