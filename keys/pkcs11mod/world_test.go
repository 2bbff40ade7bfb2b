package pkcs11mod_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cclient "github.com/edgev2/edgev2/certs/client"
	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/internal/testpki"
	kclient "github.com/edgev2/edgev2/keys/client"
)

// world is keyd on a SoftHSM token and certd on a private bus with the
// real polkitd, the module built from csrc/ by `make pkcs11mod`, and a
// test CA that issued client certificates for two of keyd's keys.
type world struct {
	dir    string // 0755, readable by the second uid
	bus    *testenv.Bus
	polkit *testenv.Polkit
	keys   *kclient.Client
	certs  *cclient.Client
	module string // libedgev2-pkcs11.so
	host   string // testdata/p11host.c, built
	env    []string
	ca     *testpki.CA
	caFile string
	pub    map[string]crypto.PublicKey // key id -> public key
}

// The keys every test uses, made by root through keyd.
const (
	ecKey   = "tls-ec"
	rsaKey  = "tls-rsa"
	aesKey  = "aes"
	hmacKey = "hmac"
	// The RSA key's certificate has its own id; the module pairs it with
	// its key by public key, so it is labelled tls-rsa.
	rsaCertID = "rsa-client-cert"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// buildModule runs `make pkcs11mod` into dir, with extra CFLAGS (a
// sanitizer), and returns the module's path.
func buildModule(t *testing.T, dir, cflags string) string {
	t.Helper()
	args := []string{"-s", "--no-print-directory", "-C", testenv.RepoRoot(), "pkcs11mod", "BIN=" + dir}
	if cflags != "" {
		args = append(args, "CFLAGS="+cflags)
	}
	if out, err := exec.Command("make", args...).CombinedOutput(); err != nil {
		if _, lerr := os.Stat("/usr/include/systemd/sd-bus.h"); lerr != nil {
			testenv.Missing(t, "libsystemd-dev", "sd-bus.h is needed to build the module")
		}
		t.Fatalf("make pkcs11mod: %v\n%s", err, out)
	}
	return filepath.Join(dir, "libedgev2-pkcs11.so")
}

func buildHost(t *testing.T, dir, cflags string) string {
	t.Helper()
	out := filepath.Join(dir, "p11host")
	args := append(strings.Fields(cflags), "-Wall", "-Wextra", "-Werror", "-O1", "-g", "-I/usr/include/p11-kit-1",
		"-o", out, filepath.Join(testenv.RepoRoot(), "keys/pkcs11mod/testdata/p11host.c"), "-ldl", "-lpthread")
	if b, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
		t.Fatalf("build p11host: %v\n%s", err, b)
	}
	return out
}

func startWorld(t *testing.T) *world {
	t.Helper()
	testenv.RequireRoot(t)
	kuid, kgid := testenv.EnsureUser(t, testenv.ServiceUser)
	w := &world{dir: testenv.SharedTempDir(t, "pkcs11mod"), pub: map[string]crypto.PublicKey{}}
	w.module = buildModule(t, w.dir, "")
	w.host = buildHost(t, w.dir, "")
	tok := testenv.NewSoftHSMToken(t, "edgev2-pkcs11mod", kuid, kgid)
	d := testenv.StartDevice(t, testenv.DeviceOptions{
		Keyd:  &testenv.Daemon{Config: tok.KeydConfig(), Env: tok.Env(), Args: []string{}},
		Certd: &testenv.Daemon{Args: []string{}},
	})
	w.bus, w.polkit, w.env = d.Bus, d.Polkit, d.Env()
	w.keys, w.certs = d.Keys(), d.Certs()
	ctx := ctxT(t)

	for id, alg := range map[string]string{ecKey: "ec-p256", rsaKey: "rsa-2048"} {
		k, err := w.keys.CreateKeyPair(ctx, id, alg)
		if err != nil {
			t.Fatalf("CreateKeyPair %s: %v", id, err)
		}
		if w.pub[id], err = k.PublicKey(ctx); err != nil {
			t.Fatal(err)
		}
		w.writePEM(t, id+".pub.pem", "PUBLIC KEY", mustPKIX(t, w.pub[id]))
	}
	if _, err := w.keys.CreateKey(ctx, aesKey, "encrypt", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := w.keys.CreateKey(ctx, hmacKey, "sign", nil); err != nil {
		t.Fatal(err)
	}

	// A test CA, its server certificate, and client certificates for the
	// keys, stored in certd.
	w.ca = testpki.NewCA(t, "pkcs11mod test CA", func(c *x509.Certificate) { c.NotAfter = time.Now().Add(24 * time.Hour) })
	w.caFile = testpki.WritePEM(t, filepath.Join(w.dir, "ca.pem"), w.ca.Cert)
	for id, certID := range map[string]string{ecKey: ecKey, rsaKey: rsaCertID} {
		cert := w.issue(t, "client-"+id, w.pub[id], x509.ExtKeyUsageClientAuth)
		if err := w.certs.Import(ctx, certID, string(testpki.PEM(cert))); err != nil {
			t.Fatalf("import certificate %s: %v", certID, err)
		}
	}
	// A certificate no key of keyd's belongs to: shown under its own id.
	other := w.issue(t, "no key here", testpki.NewKey(t).Public(), x509.ExtKeyUsageClientAuth)
	if err := w.certs.Import(ctx, "ca-only", string(testpki.PEM(other))); err != nil {
		t.Fatal(err)
	}
	return w
}

func mustPKIX(t *testing.T, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func (w *world) writePEM(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(w.dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// issue makes a certificate, valid for a day, for pub under the test CA.
func (w *world) issue(t *testing.T, cn string, pub crypto.PublicKey, usage x509.ExtKeyUsage) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
	if usage == x509.ExtKeyUsageServerAuth {
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	return w.ca.Issue(t, cn, pub, tmpl)
}

// serverIdentity writes a server certificate and key (files) for TLS servers.
func (w *world) serverIdentity(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	k := testpki.NewKey(t)
	certFile = testpki.WritePEM(t, filepath.Join(w.dir, "server.pem"), w.issue(t, "localhost", k.Public(), x509.ExtKeyUsageServerAuth))
	keyFile = filepath.Join(w.dir, "server.key")
	if err := os.WriteFile(keyFile, testpki.PKCS8PEM(t, k), 0o644); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// run runs a program as root with the bus address (and env) and returns
// its combined output and exit code.
func (w *world) run(t *testing.T, env []string, name string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, w.env...), env...)
	cmd.Dir = w.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("run %s: %v", name, err)
		}
	}
	return string(out), cmd.ProcessState.ExitCode()
}

// openSSLConf writes an OpenSSL configuration that loads Debian's
// libengine-pkcs11-openssl with the module, as docs/pkcs11.md shows.
func (w *world) openSSLConf(t *testing.T) []string {
	t.Helper()
	engine := ""
	for _, p := range []string{"/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so", "/usr/lib/aarch64-linux-gnu/engines-3/pkcs11.so",
		"/usr/lib/arm-linux-gnueabihf/engines-3/pkcs11.so"} {
		if _, err := os.Stat(p); err == nil {
			engine = p
		}
	}
	if engine == "" {
		testenv.Missing(t, "libengine-pkcs11-openssl", "OpenSSL's pkcs11 engine (engines-3/pkcs11.so) is not installed")
	}
	conf := fmt.Sprintf(`openssl_conf = openssl_init
[openssl_init]
engines = engine_section
[engine_section]
pkcs11 = pkcs11_section
[pkcs11_section]
engine_id = pkcs11
dynamic_path = %s
MODULE_PATH = %s
init = 0
`, engine, w.module)
	p := filepath.Join(w.dir, "openssl.cnf")
	if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return []string{"OPENSSL_CONF=" + p}
}

func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, tool, "not on PATH (make deps)")
		}
	}
}
