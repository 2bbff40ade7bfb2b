package pkcs11mod_test

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgev2/edgev2/internal/testenv"
)

// TestModule runs the module in real programs against keyd, certd and
// polkitd: pkcs11-tool, OpenSSL's s_client and curl through Debian's
// libengine-pkcs11-openssl, mosquitto, a second uid, and a C host process
// that forks, runs threads and passes bad arguments.
func TestModule(t *testing.T) {
	need(t, "pkcs11-tool", "openssl", "curl", "gcc", "make")
	w := startWorld(t)
	t.Run("ListsKeysAndCertificates", func(t *testing.T) { testLists(t, w) })
	t.Run("SignaturesVerifyWithOpenSSL", func(t *testing.T) { testSignatures(t, w) })
	t.Run("OpenSSLClientCertificateHandshake", func(t *testing.T) { testSClient(t, w) })
	t.Run("CurlClientCertificateByURI", func(t *testing.T) { testCurl(t, w) })
	t.Run("MosquittoPublishesWithKeydKey", func(t *testing.T) { testMosquitto(t, w) })
	t.Run("SecondUIDDeniedThenAllowedByRule", func(t *testing.T) { testSecondUID(t, w) })
	t.Run("HostProcess", func(t *testing.T) { testHost(t, w, w.module, w.host) })
}

func keyURI(id, typ string) string {
	return "pkcs11:token=edgev2;object=" + id + ";type=" + typ
}

func testLists(t *testing.T, w *world) {
	out, code := w.run(t, nil, "pkcs11-tool", "--module", w.module, "--list-objects")
	if code != 0 {
		t.Fatalf("pkcs11-tool --list-objects: exit %d\n%s", code, out)
	}
	for _, want := range []string{
		"Private Key Object; EC", "Private Key Object; RSA", "Public Key Object; EC", "Public Key Object; RSA 2048 bits",
		"Secret Key Object; AES", "Secret Key Object; Generic secret",
		"label:      " + ecKey, "label:      " + rsaKey, "label:      ca-only",
		"subject:    DN: CN=client-tls-ec", "subject:    DN: CN=client-tls-rsa",
		"sensitive, always sensitive, never extractable",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("pkcs11-tool --list-objects lacks %q:\n%s", want, out)
		}
	}
	// The RSA certificate (certd id rsa-client-cert) is labelled and
	// identified as its key, so one URI names both.
	out, _ = w.run(t, nil, "pkcs11-tool", "--module", w.module, "--list-objects", "--type", "cert")
	if strings.Contains(out, rsaCertID) || strings.Count(out, "label:      "+rsaKey) != 1 ||
		!strings.Contains(out, "ID:         "+hex.EncodeToString([]byte(rsaKey))) {
		t.Errorf("certificate of %s not paired with its key:\n%s", rsaKey, out)
	}
}

func testSignatures(t *testing.T, w *world) {
	data := filepath.Join(w.dir, "data")
	os.WriteFile(data, []byte("signed through libedgev2-pkcs11\n"), 0o644)
	sum := sha256.Sum256([]byte("signed through libedgev2-pkcs11\n"))
	os.WriteFile(data+".sha256", sum[:], 0o644)
	di, _ := hex.DecodeString("3031300d060960864801650304020105000420")
	os.WriteFile(data+".di", append(di, sum[:]...), 0o644)
	pss := []string{"-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32"}
	for _, c := range []struct {
		name, key, mech, input string
		extra, verify          []string
	}{
		{"ECDSA-SHA256", ecKey, "ECDSA-SHA256", data, []string{"--signature-format", "openssl"}, nil},
		{"ECDSA over a digest", ecKey, "ECDSA", data + ".sha256", []string{"--signature-format", "openssl"}, nil},
		{"SHA256-RSA-PKCS", rsaKey, "SHA256-RSA-PKCS", data, nil, nil},
		{"RSA-PKCS over a DigestInfo", rsaKey, "RSA-PKCS", data + ".di", nil, nil},
		{"SHA256-RSA-PKCS-PSS", rsaKey, "SHA256-RSA-PKCS-PSS", data, []string{"--salt-len", "32"}, pss},
		{"RSA-PKCS-PSS over a digest", rsaKey, "RSA-PKCS-PSS", data + ".sha256",
			[]string{"--hash-algorithm", "SHA256", "--mgf", "MGF1-SHA256", "--salt-len", "32"}, pss},
	} {
		t.Run(c.name, func(t *testing.T) {
			sig := filepath.Join(w.dir, "sig-"+strings.ReplaceAll(c.name, " ", "_"))
			args := append([]string{"--module", w.module, "--sign", "--mechanism", c.mech,
				"--id", hex.EncodeToString([]byte(c.key)), "--input-file", c.input, "--output-file", sig}, c.extra...)
			if out, code := w.run(t, nil, "pkcs11-tool", args...); code != 0 {
				t.Fatalf("pkcs11-tool --sign: exit %d\n%s", code, out)
			}
			v := append(append([]string{"dgst", "-sha256"}, c.verify...), "-verify",
				filepath.Join(w.dir, c.key+".pub.pem"), "-signature", sig, data)
			if out, code := w.run(t, nil, "openssl", v...); code != 0 || !strings.Contains(out, "Verified OK") {
				t.Fatalf("openssl %s: exit %d\n%s", strings.Join(v, " "), code, out)
			}
		})
	}
}

// tlsServer serves HTTPS on 127.0.0.1 requiring a client certificate from
// the test CA, and answers with the client's common name.
func (w *world) tlsServer(t *testing.T) (addr string, seen func() []string) {
	t.Helper()
	certFile, keyFile := w.serverIdentity(t)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(w.ca.Cert)
	var mu sync.Mutex
	var names []string
	srv := &http.Server{
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool,
			VerifyConnection: func(cs tls.ConnectionState) error {
				mu.Lock()
				names = append(names, fmt.Sprintf("%s %s", cs.PeerCertificates[0].Subject.CommonName, tls.VersionName(cs.Version)))
				mu.Unlock()
				return nil
			}},
		Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(rw, "hello %s\n", r.TLS.PeerCertificates[0].Subject.CommonName)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), names...)
	}
}

// certFile writes the certificate the module shows under label to a PEM
// file, read through the module (s_client and mosquitto load certificates
// from files only).
func (w *world) certFile(t *testing.T, label string) string {
	t.Helper()
	der := filepath.Join(w.dir, label+".crt.der")
	if out, code := w.run(t, nil, "pkcs11-tool", "--module", w.module, "--read-object", "--type", "cert",
		"--label", label, "--output-file", der); code != 0 {
		t.Fatalf("pkcs11-tool --read-object: exit %d\n%s", code, out)
	}
	p := filepath.Join(w.dir, label+".crt.pem")
	if out, code := w.run(t, nil, "openssl", "x509", "-inform", "der", "-in", der, "-out", p); code != 0 {
		t.Fatalf("openssl x509: %s", out)
	}
	return p
}

func testSClient(t *testing.T, w *world) {
	env := w.openSSLConf(t)
	addr, seen := w.tlsServer(t)
	for _, key := range []string{ecKey, rsaKey} {
		for _, version := range []string{"-tls1_2", "-tls1_3"} {
			t.Run(key+version, func(t *testing.T) {
				before := len(seen())
				out, code := w.run(t, env, "sh", "-c", `printf 'GET / HTTP/1.0\r\n\r\n' | openssl s_client "$@"`, "sh",
					version, "-connect", addr, "-CAfile", w.caFile, "-verify_return_error", "-ign_eof",
					"-engine", "pkcs11", "-keyform", "engine", "-key", keyURI(key, "private"),
					"-cert", w.certFile(t, key))
				if code != 0 || !strings.Contains(out, "hello client-"+key) {
					t.Fatalf("s_client with %s: exit %d\n%s", keyURI(key, "private"), code, out)
				}
				if got := seen(); len(got) != before+1 || !strings.HasPrefix(got[before], "client-"+key+" TLS 1.") {
					t.Fatalf("server saw %v", got)
				}
			})
		}
	}
}

func testCurl(t *testing.T, w *world) {
	env := w.openSSLConf(t)
	addr, _ := w.tlsServer(t)
	for _, key := range []string{ecKey, rsaKey} {
		t.Run(key, func(t *testing.T) {
			out, code := w.run(t, env, "curl", "-sS", "--cacert", w.caFile,
				"--cert", keyURI(key, "cert"), "--key", keyURI(key, "private"), "https://"+addr+"/")
			if code != 0 || strings.TrimSpace(out) != "hello client-"+key {
				t.Fatalf("curl --cert/--key %s: exit %d\n%s", keyURI(key, "cert"), code, out)
			}
		})
	}
	// Without the key, the server refuses: the handshake above was the key's doing.
	out, code := w.run(t, env, "curl", "-sS", "--cacert", w.caFile, "https://"+addr+"/")
	if code == 0 {
		t.Fatalf("curl without a client certificate got through:\n%s", out)
	}
}

func testMosquitto(t *testing.T, w *world) {
	need(t, "mosquitto", "mosquitto_pub", "mosquitto_sub")
	certFile, keyFile := w.serverIdentity(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	conf := filepath.Join(w.dir, "mosquitto.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("listener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\n"+
		"require_certificate true\nuse_identity_as_username true\nallow_anonymous false\n",
		port, w.caFile, certFile, keyFile)), 0o644)
	broker := testenv.StartService(t, w.bus, testenv.ServiceOptions{Binary: "/usr/sbin/mosquitto",
		Args: []string{"-c", conf}, User: "root"})
	_ = broker
	waitPort(t, port)

	// mosquitto_pub/sub 2.0.11 check that --key names a file before they
	// look at --keyform, so the URI must also exist as a (empty) file in
	// the working directory; the engine is pointed at the module with
	// PKCS11_MODULE_PATH (or p11-kit's registration, edgev2.module).
	env := []string{"PKCS11_MODULE_PATH=" + w.module}
	tls := func(key string) []string {
		os.WriteFile(filepath.Join(w.dir, keyURI(key, "private")), nil, 0o644)
		return []string{"-h", "127.0.0.1", "-p", fmt.Sprint(port), "--cafile", w.caFile, "--cert", w.certFile(t, key),
			"--keyform", "engine", "--tls-engine", "pkcs11", "--key", keyURI(key, "private")}
	}
	subArgs := append(tls(ecKey), "-t", "edgev2/test", "-C", "1", "-v", "-W", "30")
	pubArgs := append(tls(rsaKey), "-t", "edgev2/test", "-m", "hello from keyd")
	type result struct {
		out  string
		code int
	}
	got := make(chan result, 1)
	go func() {
		out, code := w.run(t, env, "mosquitto_sub", subArgs...)
		got <- result{out, code}
	}()
	// Publish until the subscriber (also authenticated with a keyd key) has it.
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, code := w.run(t, env, "mosquitto_pub", pubArgs...)
		if code != 0 {
			t.Fatalf("mosquitto_pub with key %s: exit %d\n%s", keyURI(rsaKey, "private"), code, out)
		}
		select {
		case r := <-got:
			if r.code != 0 || !strings.Contains(r.out, "edgev2/test hello from keyd") {
				t.Fatalf("mosquitto_sub: exit %d\n%s\nbroker:\n%s", r.code, r.out, broker.Output())
			}
			for _, u := range []string{"u'client-tls-ec'", "u'client-tls-rsa'"} {
				if !strings.Contains(broker.Output(), u) {
					t.Errorf("broker log lacks client %s:\n%s", u, broker.Output())
				}
			}
			return
		case <-time.After(time.Second):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no message arrived; broker:\n%s", broker.Output())
		}
	}
}

func waitPort(t *testing.T, port int) {
	t.Helper()
	testenv.EventuallyNoError(t, 10*time.Second, func() error {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
		}
		return err
	}, "nothing listens on port %d", port)
}

func testSecondUID(t *testing.T, w *world) {
	uid, gid := testenv.EnsureUser(t, testenv.OtherUser)
	dir := filepath.Join(w.dir, "other")
	os.MkdirAll(dir, 0o755)
	os.Chown(dir, uid, gid)
	data := filepath.Join(dir, "data")
	os.WriteFile(data, []byte("second uid"), 0o644)
	sign := func(key string) (string, string, int) {
		sig := filepath.Join(dir, "sig-"+key)
		os.Remove(sig)
		mech := map[string]string{ecKey: "ECDSA-SHA256", rsaKey: "SHA256-RSA-PKCS"}[key]
		stdout, stderr, code := testenv.RunAs(t, testenv.OtherUser, w.env, "pkcs11-tool", "--module", w.module,
			"--sign", "--mechanism", mech, "--id", hex.EncodeToString([]byte(key)),
			"--input-file", data, "--output-file", sig, "--signature-format", "openssl")
		return sig, stdout + stderr, code
	}
	// Without a rule: keys.read lets the uid see the key, keys.use is
	// refused, and the module says which polkit action to grant.
	_, out, code := sign(ecKey)
	if code == 0 {
		t.Fatalf("second uid signed with %s without a polkit rule:\n%s", ecKey, out)
	}
	for _, want := range []string{"CKR_KEY_FUNCTION_NOT_PERMITTED", "polkit action org.edgev2.keys.use",
		`not authorized for org.edgev2.keys.use on key_id "tls-ec"`} {
		if !strings.Contains(out, want) {
			t.Errorf("denial output lacks %q:\n%s", want, out)
		}
	}
	w.polkit.AddRule(t, "pkcs11mod-second-uid", testenv.GrantRule("org.edgev2.keys.use", testenv.OtherUser, "key_id", ecKey))
	sig, out, code := sign(ecKey)
	if code != 0 {
		t.Fatalf("second uid with a rule for %s: exit %d\n%s", ecKey, code, out)
	}
	if out, code := w.run(t, nil, "openssl", "dgst", "-sha256", "-verify", filepath.Join(w.dir, ecKey+".pub.pem"),
		"-signature", sig, data); code != 0 {
		t.Fatalf("openssl verify of the second uid's signature: %s", out)
	}
	// The rule grants that key only: the RSA key stays refused.
	if _, out, code := sign(rsaKey); code == 0 || !strings.Contains(out, `not authorized for org.edgev2.keys.use on key_id "tls-rsa"`) {
		t.Fatalf("second uid signed with %s, which the rule does not grant (exit %d):\n%s", rsaKey, code, out)
	}
}

// testHost runs the C host program against module: bad arguments, fork,
// threads, init/finalize cycles.
func testHost(t *testing.T, w *world, module, host string) {
	// p11host runs one check of the host program and returns its output; it
	// fails unless the check exits 0 and its output contains want.
	p11host := func(t *testing.T, want string, args ...string) string {
		t.Helper()
		out, code := w.run(t, nil, host, append([]string{module}, args...)...)
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("p11host %s: exit %d, want %q in\n%s", args[0], code, want, out)
		}
		return out
	}
	t.Run("BadArgumentsGetNamedErrors", func(t *testing.T) {
		p11host(t, "robust: 0 failures", "robust", ecKey, rsaKey, aesKey, hmacKey)
	})
	t.Run("ForkedChildSigns", func(t *testing.T) {
		out := p11host(t, "", "fork", ecKey)
		for _, tag := range []string{"parent", "child-reinit", "child-inherited", "parent-after"} {
			w.checkSig(t, out, tag)
		}
	})
	t.Run("EightThreadsSignConcurrently", func(t *testing.T) {
		p11host(t, "signed-and-verified 200 of 200", "threads", ecKey, "8", "25")
	})
	// A host that takes signals (Go's SIGURG preemption, a timer) interrupts
	// the module's poll(): the call is made again, not failed.
	t.Run("SignalsDoNotFailCalls", func(t *testing.T) {
		p11host(t, "signed-and-verified 200 of 200", "signals", ecKey, "200")
	})
	t.Run("FinalizeLeavesNoThreadOrConnection", func(t *testing.T) {
		out := p11host(t, "", "cycle", ecKey)
		for i := 0; i < 3; i++ {
			w.checkSig(t, out, "cycle")
		}
	})
}

// checkSig finds "tag <hex r||s>" in out and verifies it over the host
// program's digest (bytes 1..32) with the EC key.
func (w *world) checkSig(t *testing.T, out, tag string) {
	t.Helper()
	digest := make([]byte, 32)
	for i := range digest {
		digest[i] = byte(i + 1)
	}
	for _, line := range strings.Split(out, "\n") {
		rest, ok := strings.CutPrefix(line, tag+" ")
		if !ok {
			continue
		}
		raw, err := hex.DecodeString(strings.TrimSpace(rest))
		if err != nil || len(raw) != 64 {
			t.Fatalf("%s: bad signature %q", tag, rest)
		}
		r, s := new(big.Int).SetBytes(raw[:32]), new(big.Int).SetBytes(raw[32:])
		if !ecdsa.Verify(w.pub[ecKey].(*ecdsa.PublicKey), digest, r, s) {
			t.Fatalf("%s: signature does not verify", tag)
		}
		return
	}
	t.Fatalf("no %q signature in output:\n%s", tag, out)
}

// TestModuleUnderSanitizers runs the C host program's checks against the
// module built with AddressSanitizer (leaks included) and UBSan.
func TestModuleUnderSanitizers(t *testing.T) {
	need(t, "gcc", "make")
	w := startWorld(t)
	const san = "-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"
	dir := filepath.Join(w.dir, "asan")
	os.Mkdir(dir, 0o755)
	module := buildModule(t, dir, san)
	host := buildHost(t, dir, san)
	testHost(t, w, module, host)
}
