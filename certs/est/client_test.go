package est

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"

	"github.com/edgev2/edgev2/fault"
)

// reply answers every request with status, body and Content-Type ctype;
// with ctype empty it sends no Content-Type at all (none sniffed either).
func reply(status int, ctype string, body []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ctype != "" {
			w.Header().Set("Content-Type", ctype)
		} else {
			w.Header()["Content-Type"] = nil
		}
		w.WriteHeader(status)
		w.Write(body)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"plain http", Config{URL: "http://127.0.0.1:8080/.well-known/est"}, "plain http"},
		{"other scheme", Config{URL: "ftp://est.example/"}, "https://"},
		{"no host", Config{URL: "https:///.well-known/est"}, "no host"},
		{"credentials in URL", Config{URL: "https://user:s3cret@est.example/.well-known/est"}, "embeds credentials"},
		{"query", Config{URL: "https://est.example/.well-known/est?x=1"}, "query"},
		{"label with slash", Config{URL: "https://est.example/.well-known/est", Label: "a/b"}, `label "a/b"`},
		{"label dotdot", Config{URL: "https://est.example/.well-known/est", Label: ".."}, "label"},
		{"negative timeout", Config{URL: "https://est.example/", Timeout: -1}, "negative"},
		{"negative attempts", Config{URL: "https://est.example/", MaxAttempts: -1}, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if !fault.Is(err, fault.InvalidArgs) {
				t.Fatalf("New = %v, want InvalidArgs", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q leaks the password", err)
			}
		})
	}
}

func TestSimpleEnrollSendsBase64CSRAndReturnsLeafFirst(t *testing.T) {
	ca := newCA(t, "EST CA")
	var got struct {
		method, path, ctype, accept, cte string
		body                             []byte
	}
	enroll := enrollHandler(t, ca, ca.Cert) // CA cert sent before the leaf
	srv := newESTServer(t, ca, nil, func(w http.ResponseWriter, r *http.Request) {
		got.method, got.path = r.Method, r.URL.Path
		got.ctype, got.accept = r.Header.Get("Content-Type"), r.Header.Get("Accept")
		got.cte = r.Header.Get("Content-Transfer-Encoding")
		got.body, _ = io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(got.body))
		enroll(w, r)
	})
	csr, key := newCSR(t, "device-1")
	certs, err := srv.client(t, Config{}).SimpleEnroll(context.Background(), Auth{}, csr)
	if err != nil {
		t.Fatalf("SimpleEnroll: %v", err)
	}
	if got.method != http.MethodPost || got.path != "/.well-known/est/simpleenroll" {
		t.Errorf("request = %s %s, want POST /.well-known/est/simpleenroll", got.method, got.path)
	}
	if got.ctype != "application/pkcs10" || got.accept != "application/pkcs7-mime" || got.cte != "" {
		t.Errorf("headers Content-Type=%q Accept=%q CTE=%q", got.ctype, got.accept, got.cte)
	}
	if want := base64.StdEncoding.EncodeToString(csr); string(got.body) != want {
		t.Errorf("body = %q, want one line of base64 of the CSR", got.body)
	}
	if len(certs) != 2 {
		t.Fatalf("got %d certs, want leaf + CA", len(certs))
	}
	if !bytes.Equal(certs[0].RawSubjectPublicKeyInfo, mustSPKI(t, key)) || certs[0].Subject.CommonName != "device-1" {
		t.Errorf("first cert is %q, want the leaf for the CSR's key", certs[0].Subject)
	}
	if !certs[1].Equal(ca.Cert) {
		t.Errorf("second cert is %q, want the CA", certs[1].Subject)
	}
}

func mustSPKI(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestOrderForKeyFollowsIssuers(t *testing.T) {
	root := newCA(t, "root")
	intCA := root.SubCA(t, "intermediate")
	inter := intCA.Cert
	other := newCA(t, "unrelated")
	csrDER, key := newCSR(t, "leaf")
	leaf := intCA.Issue(t, "leaf", key.Public(), nil)
	csr, _ := x509.ParseCertificateRequest(csrDER)

	got, err := orderForKey(csr, []*x509.Certificate{other.Cert, root.Cert, leaf, inter})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range got {
		names = append(names, c.Subject.CommonName)
	}
	if want := "leaf intermediate root unrelated"; strings.Join(names, " ") != want {
		t.Errorf("order = %v, want %s", names, want)
	}
}

func TestSimpleReenrollUsesOpaqueSignerClientCert(t *testing.T) {
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			ca := newCA(t, "EST CA")
			devKey := newKey(t)
			devCert := ca.Issue(t, "device-1", devKey.Public(), nil)
			signer := &opaqueSigner{pub: devKey.Public(), sign: devKey.Sign}
			var peer string
			var path string
			enroll := enrollHandler(t, ca)
			srv := newESTServer(t, ca, &tls.Config{
				ClientAuth: tls.RequireAndVerifyClientCert,
				ClientCAs:  ca.Pool(),
				MaxVersion: version,
			}, func(w http.ResponseWriter, r *http.Request) {
				peer, path = r.TLS.PeerCertificates[0].Subject.CommonName, r.URL.Path
				enroll(w, r)
			})
			csr, _ := newCSR(t, "device-1")
			auth := Auth{ClientCert: &tls.Certificate{Certificate: [][]byte{devCert.Raw}, PrivateKey: signer}}
			if _, err := srv.client(t, Config{}).SimpleReenroll(context.Background(), auth, csr); err != nil {
				t.Fatalf("SimpleReenroll: %v", err)
			}
			if peer != "device-1" || path != "/.well-known/est/simplereenroll" {
				t.Errorf("server saw client %q on %q", peer, path)
			}
			if signer.uses.Load() == 0 {
				t.Error("the opaque signer was never asked to sign")
			}
		})
	}
}

func TestServerRejectingClientCertIsNotAuthorized(t *testing.T) {
	ca := newCA(t, "EST CA")
	srv := newESTServer(t, ca, &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool()},
		func(w http.ResponseWriter, r *http.Request) { t.Error("handler reached without a client certificate") })
	for _, tc := range []struct {
		name string
		auth Auth
	}{
		{"no certificate", Auth{}},
		{"certificate from another CA", func() Auth {
			k := newKey(t)
			c := newCA(t, "rogue").Issue(t, "device-1", k.Public(), nil)
			return Auth{ClientCert: &tls.Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: k}}
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := srv.client(t, Config{}).CACerts(context.Background(), tc.auth)
			if !fault.Is(err, fault.NotAuthorized) {
				t.Fatalf("CACerts = %v (%v), want NotAuthorized", err, errors.Unwrap(err))
			}
		})
	}
}

func TestBasicAuthHeaderSent(t *testing.T) {
	ca := newCA(t, "EST CA")
	var user, pass string
	var ok bool
	srv := newESTServer(t, ca, nil, func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok = r.BasicAuth()
		w.Header().Set("Content-Type", "application/pkcs7-mime")
		w.Write(certsOnly(t, ca.Cert))
	})
	if _, err := srv.client(t, Config{}).CACerts(context.Background(), Auth{Username: "estuser", Password: "p@ss:word"}); err != nil {
		t.Fatal(err)
	}
	if !ok || user != "estuser" || pass != "p@ss:word" {
		t.Errorf("server saw Basic auth %v %q %q", ok, user, pass)
	}
}

func TestBadAuthRefusedBeforeSending(t *testing.T) {
	c, err := New(Config{URL: "https://127.0.0.1:1/.well-known/est"})
	if err != nil {
		t.Fatal(err)
	}
	for _, auth := range []Auth{
		{Username: "a:b", Password: "secret-pw"},
		{Password: "secret-pw"},
		{Username: "a\nb", Password: "secret-pw"},
		{ClientCert: &tls.Certificate{}},
		{ClientCert: &tls.Certificate{Certificate: [][]byte{{1}}, PrivateKey: "not a key"}},
	} {
		_, err := c.CACerts(context.Background(), auth)
		if !fault.Is(err, fault.InvalidArgs) || strings.Contains(err.Error(), "secret-pw") {
			t.Errorf("CACerts(%+v) = %v, want InvalidArgs without the password", auth.Username, err)
		}
	}
}

func TestLabelGoesIntoPath(t *testing.T) {
	ca := newCA(t, "EST CA")
	var path string
	srv := newESTServer(t, ca, nil, func(w http.ResponseWriter, r *http.Request) {
		path = r.URL.Path
		w.Header().Set("Content-Type", "application/pkcs7-mime")
		w.Write(certsOnly(t, ca.Cert))
	})
	for _, base := range []string{srv.URL + "/.well-known/est", srv.URL + "/.well-known/est/"} {
		c := srv.client(t, Config{URL: base, Label: "arbitraryLabel1"})
		if _, err := c.CACerts(context.Background(), Auth{}); err != nil {
			t.Fatal(err)
		}
		if path != "/.well-known/est/arbitraryLabel1/cacerts" {
			t.Errorf("base %q: path = %q", base, path)
		}
	}
}

func TestCACertsAcceptsEncodings(t *testing.T) {
	ca := newCA(t, "EST CA")
	pem := certsOnly(t, ca.Cert)
	compact := []byte(strings.NewReplacer("\r", "", "\n", "").Replace(string(pem)))
	der, _ := base64.StdEncoding.DecodeString(string(compact))
	for _, tc := range []struct {
		name, ctype string
		body        []byte
	}{
		{"64-column CRLF base64", "application/pkcs7-mime; smime-type=certs-only", pem},
		{"one-line base64, no smime-type", "application/pkcs7-mime", compact},
		{"unpadded base64", "Application/PKCS7-MIME", bytes.TrimRight(compact, "=")},
		{"raw DER", "application/pkcs7-mime", der},
		{"legacy x-pkcs7-mime", "application/x-pkcs7-mime", pem},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newESTServer(t, ca, nil, func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodGet || r.URL.Path != "/.well-known/est/cacerts" {
					t.Errorf("request %s %s", r.Method, r.URL.Path)
				}
				w.Header().Set("Content-Type", tc.ctype)
				w.Write(tc.body)
			})
			certs, err := srv.client(t, Config{}).CACerts(context.Background(), Auth{})
			if err != nil {
				t.Fatal(err)
			}
			if len(certs) != 1 || !certs[0].Equal(ca.Cert) {
				t.Errorf("got %d certs, want the CA", len(certs))
			}
		})
	}
}

func TestErrorStatusesMapToFaultKinds(t *testing.T) {
	for _, tc := range []struct {
		status int
		ctype  string
		body   string
		want   fault.Kind
		text   string
	}{
		{400, "text/plain", "CSR subject not allowed", fault.InvalidArgs, `server says "CSR subject not allowed"`},
		{401, "text/plain; charset=utf-8", "bad password\r\n", fault.NotAuthorized, `server says "bad password"`},
		{403, "", "device not registered", fault.NotAuthorized, `server says "device not registered"`},
		{403, "text/html", "<html>forbidden</html>", fault.NotAuthorized, "(HTTP 403)"},
		{404, "text/plain", "unknown label", fault.NotFound, `server says "unknown label"`},
		{408, "", "", fault.Unavailable, "HTTP 408"},
		{429, "", "", fault.Unavailable, "HTTP 429"},
		{500, "text/plain", "CA offline", fault.Unavailable, "HTTP 500"},
		{502, "", "", fault.Unavailable, "HTTP 502"},
		{503, "text/plain", "try later", fault.Unavailable, `server says "try later"`},
		{405, "", "", fault.Failed, "unexpected HTTP status 405"},
		{204, "", "", fault.Failed, "unexpected HTTP status 204"},
	} {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			ca := newCA(t, "EST CA")
			srv := newESTServer(t, ca, nil, reply(tc.status, tc.ctype, []byte(tc.body)))
			csr, _ := newCSR(t, "device-1")
			_, err := srv.client(t, Config{}).SimpleEnroll(context.Background(), Auth{}, csr)
			if fault.KindOf(err) != tc.want {
				t.Fatalf("SimpleEnroll = %v (kind %v), want %v", err, fault.KindOf(err), tc.want)
			}
			if !strings.Contains(fault.Message(err), tc.text) {
				t.Errorf("message %q does not contain %q", fault.Message(err), tc.text)
			}
			if tc.ctype == "text/html" && strings.Contains(err.Error(), "html") {
				t.Errorf("message %q quotes an HTML body", err)
			}
		})
	}
}

func TestServerReasonIsSanitizedAndTruncated(t *testing.T) {
	ca := newCA(t, "EST CA")
	reason := "denied\x1b[31m\x00\n\tby\xffpolicy " + strings.Repeat("x", 5000)
	srv := newESTServer(t, ca, nil, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, reason)
	})
	_, err := srv.client(t, Config{}).CACerts(context.Background(), Auth{})
	if !fault.Is(err, fault.NotAuthorized) {
		t.Fatalf("CACerts = %v, want NotAuthorized", err)
	}
	msg := fault.Message(err)
	if !strings.Contains(msg, `"denied [31m by policy xxx`) {
		t.Errorf("message %q does not carry the cleaned reason", msg)
	}
	if strings.ContainsAny(msg, "\x1b\x00\n\t\xff") {
		t.Errorf("message %q has control bytes", msg)
	}
	if len(msg) > 400 || !strings.Contains(msg, "...") {
		t.Errorf("message is %d bytes; want it cut with ...", len(msg))
	}
}

// TestServerReasonNeverEchoesTheCredentials: an EST server (or a proxy in
// front of it) that refuses the request quoting back what it got, the
// Authorization header or the password itself: the error says what it
// said and holds neither the password nor its Basic encoding.
func TestServerReasonNeverEchoesTheCredentials(t *testing.T) {
	ca := newCA(t, "EST CA")
	const password = "Est-Echo-Pw-0417"
	basic := base64.StdEncoding.EncodeToString([]byte("estuser:" + password))
	for _, echo := range []func(r *http.Request) string{
		func(r *http.Request) string { return "refused " + r.Header.Get("Authorization") },
		func(r *http.Request) string {
			_, pw, _ := r.BasicAuth()
			return "refused: password " + pw + " is wrong"
		},
	} {
		srv := newESTServer(t, ca, nil, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, echo(r))
		})
		_, err := srv.client(t, Config{}).CACerts(context.Background(), Auth{Username: "estuser", Password: password})
		if !fault.Is(err, fault.NotAuthorized) || !strings.Contains(err.Error(), "refused") {
			t.Fatalf("CACerts = %v, want NotAuthorized quoting the server", err)
		}
		if strings.Contains(err.Error(), password) || strings.Contains(err.Error(), basic) {
			t.Errorf("the error repeats the EST credentials: %v", err)
		}
	}
}

func TestDeferredEnrollmentHonoursRetryAfter(t *testing.T) {
	ca := newCA(t, "EST CA")
	serverDate := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name       string
		retryAfter []string // one per 202, then a certificate
		date       bool     // send Date: serverDate
		want       []time.Duration
	}{
		{"delta seconds", []string{"5", "120"}, false, []time.Duration{5 * time.Second, 120 * time.Second}},
		{"http-date against server Date", []string{serverDate.Add(90 * time.Second).Format(http.TimeFormat)}, true, []time.Duration{90 * time.Second}},
		{"capped by MaxRetryAfter", []string{"86400", "99999999999999999999999"}, false, []time.Duration{10 * time.Minute, 10 * time.Minute}},
		{"zero and past dates wait a second", []string{"0", serverDate.Add(-time.Hour).Format(http.TimeFormat)}, true, []time.Duration{time.Second, time.Second}},
		{"missing or junk uses the default", []string{"", "soon"}, false, []time.Duration{defaultRetryAfter, defaultRetryAfter}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			n := 0
			enroll := enrollHandler(t, ca)
			srv := newESTServer(t, ca, nil, func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				i := n
				n++
				mu.Unlock()
				if tc.date {
					w.Header().Set("Date", serverDate.Format(http.TimeFormat))
				}
				if i < len(tc.retryAfter) {
					if tc.retryAfter[i] != "" {
						w.Header().Set("Retry-After", tc.retryAfter[i])
					}
					w.WriteHeader(http.StatusAccepted)
					return
				}
				enroll(w, r)
			})
			var slept []time.Duration
			c := srv.client(t, Config{Sleep: func(_ context.Context, d time.Duration) error {
				slept = append(slept, d)
				return nil
			}})
			csr, _ := newCSR(t, "device-1")
			certs, err := c.SimpleEnroll(context.Background(), Auth{}, csr)
			if err != nil {
				t.Fatalf("SimpleEnroll: %v", err)
			}
			if len(certs) != 1 {
				t.Errorf("got %d certs", len(certs))
			}
			if len(slept) != len(tc.want) {
				t.Fatalf("slept %v, want %v", slept, tc.want)
			}
			for i := range slept {
				if slept[i] != tc.want[i] {
					t.Errorf("sleep %d = %v, want %v", i, slept[i], tc.want[i])
				}
			}
		})
	}
}

func TestRetryAfterHTTPDateWithoutServerDateUsesLocalClock(t *testing.T) {
	c, err := New(Config{URL: "https://est.example/"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	c.now = func() time.Time { return now }
	h := http.Header{"Retry-After": {now.Add(42 * time.Second).Format(http.TimeFormat)}}
	if d := c.retryAfter(h); d != 42*time.Second {
		t.Errorf("retryAfter = %v, want 42s", d)
	}
}

func TestDeferredEnrollmentGivesUpAfterMaxAttempts(t *testing.T) {
	ca := newCA(t, "EST CA")
	var mu sync.Mutex
	requests := 0
	srv := newESTServer(t, ca, nil, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests++
		mu.Unlock()
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusAccepted)
	})
	sleeps := 0
	c := srv.client(t, Config{MaxAttempts: 3, Sleep: func(context.Context, time.Duration) error { sleeps++; return nil }})
	csr, _ := newCSR(t, "device-1")
	_, err := c.SimpleEnroll(context.Background(), Auth{}, csr)
	if !fault.Is(err, fault.Unavailable) || !strings.Contains(err.Error(), "deferred enrollment 3 times") {
		t.Fatalf("SimpleEnroll = %v, want Unavailable after 3 deferrals", err)
	}
	if requests != 3 || sleeps != 2 {
		t.Errorf("requests=%d sleeps=%d, want 3 and 2", requests, sleeps)
	}
}

func TestDeferredEnrollmentStopsWhenContextEnds(t *testing.T) {
	ca := newCA(t, "EST CA")
	srv := newESTServer(t, ca, nil, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "3600")
		w.WriteHeader(http.StatusAccepted)
	})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	csr, _ := newCSR(t, "device-1")
	start := time.Now()
	_, err := srv.client(t, Config{MaxRetryAfter: time.Hour}).SimpleEnroll(ctx, Auth{}, csr) // real sleep
	if !fault.Is(err, fault.Unavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("SimpleEnroll = %v, want Unavailable wrapping context.Canceled", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Error("cancel did not interrupt the wait")
	}
}

func TestUntrustedServerRefused(t *testing.T) {
	ca := newCA(t, "EST CA")
	srv := newESTServer(t, ca, nil, func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("request %s reached an untrusted server", r.URL.Path)
	})
	for _, tc := range []struct {
		name    string
		anchors *x509.CertPool
	}{
		{"other trust anchor", newCA(t, "other CA").Pool()},
		{"system roots", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(Config{URL: srv.URL + "/.well-known/est", TrustAnchors: tc.anchors})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.CACerts(context.Background(), Auth{Username: "u", Password: "secret-pw"})
			if !fault.Is(err, fault.Unavailable) || !strings.Contains(err.Error(), "not trusted") {
				t.Fatalf("CACerts = %v, want Unavailable 'not trusted'", err)
			}
		})
	}
}

func TestServerNameChecked(t *testing.T) {
	ca := newCA(t, "EST CA")
	key := newKey(t)
	cert := ca.Issue(t, "elsewhere", key.Public(), &x509.Certificate{
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"elsewhere.example"},
	})
	srv := newESTServer(t, ca, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{cert.Raw}, PrivateKey: key}}},
		func(w http.ResponseWriter, r *http.Request) { t.Error("request reached a server with the wrong name") })
	_, err := srv.client(t, Config{}).CACerts(context.Background(), Auth{})
	if !fault.Is(err, fault.Unavailable) || !strings.Contains(err.Error(), "not valid for host") {
		t.Fatalf("CACerts = %v, want Unavailable naming the host mismatch", err)
	}
}

func TestInvalidCertResponsesFail(t *testing.T) {
	ca := newCA(t, "EST CA")
	good := certsOnly(t, ca.Cert)
	goodDER, _ := base64.StdEncoding.DecodeString(strings.NewReplacer("\r", "", "\n", "").Replace(string(good)))
	noCerts := mustB64(t, mustDegenerate(t, nil))
	const p7 = "application/pkcs7-mime"
	for _, tc := range []struct {
		name, ctype string
		body        []byte
		want        string
	}{
		{"HTML with HTML type", "text/html", []byte("<html><body>Login</body></html>"), "Content-Type"},
		{"HTML with pkcs7 type", p7, []byte("<!DOCTYPE html><html>proxy error</html>"), "HTML"},
		{"no content type", "", good, "no Content-Type"},
		{"empty", p7, nil, "empty"},
		{"whitespace only", p7, []byte("\r\n  \r\n"), "empty"},
		{"garbage", p7, []byte("\x01\x02garbage\xff"), "neither base64 nor DER"},
		{"bad base64", p7, []byte("MIIB===x"), "base64"},
		{"base64 of junk", p7, []byte(base64.StdEncoding.EncodeToString([]byte("hello world, not asn1"))), "PKCS#7"},
		{"truncated", p7, []byte(base64.StdEncoding.EncodeToString(goodDER[:len(goodDER)/2])), "PKCS#7"},
		{"truncated DER", p7, goodDER[:len(goodDER)-10], "PKCS#7"},
		{"no certificates", p7, noCerts, "no certificate"},
		{"a bare certificate", p7, []byte(base64.StdEncoding.EncodeToString(ca.Cert.Raw)), "PKCS#7"},
		{"huge", p7, bytes.Repeat([]byte("QUFB"), MaxResponseSize/4+1), "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newESTServer(t, ca, nil, reply(http.StatusOK, tc.ctype, tc.body))
			c := srv.client(t, Config{})
			_, err := c.CACerts(context.Background(), Auth{})
			if !fault.Is(err, fault.Failed) || !strings.Contains(err.Error(), "sent an invalid response") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("CACerts = %v (kind %v), want Failed 'invalid response ... %s'", err, fault.KindOf(err), tc.want)
			}
			csr, _ := newCSR(t, "device-1")
			if _, err := c.SimpleEnroll(context.Background(), Auth{}, csr); !fault.Is(err, fault.Failed) {
				t.Errorf("SimpleEnroll = %v, want Failed", err)
			}
		})
	}
}

func mustDegenerate(t *testing.T, raw []byte) []byte {
	t.Helper()
	der, err := pkcs7.DegenerateCertificate(raw)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func mustB64(t *testing.T, der []byte) []byte {
	return []byte(base64.StdEncoding.EncodeToString(der))
}

func TestBodyCutShortIsUnavailable(t *testing.T) {
	ca := newCA(t, "EST CA")
	srv := newESTServer(t, ca, nil, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/pkcs7-mime")
		w.Header().Set("Content-Length", "5000")
		w.Write([]byte("MIIB"))
		// the handler returns early; the server closes the connection
		panic(http.ErrAbortHandler)
	})
	_, err := srv.client(t, Config{}).CACerts(context.Background(), Auth{})
	if !fault.Is(err, fault.Unavailable) {
		t.Fatalf("CACerts = %v, want Unavailable", err)
	}
}

func TestCertificateForAnotherKeyRefused(t *testing.T) {
	ca := newCA(t, "EST CA")
	other := newKey(t)
	srv := newESTServer(t, ca, nil, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/pkcs7-mime")
		w.Write(certsOnly(t, ca.Issue(t, "device-1", other.Public(), nil), ca.Cert))
	})
	csr, _ := newCSR(t, "device-1")
	_, err := srv.client(t, Config{}).SimpleEnroll(context.Background(), Auth{}, csr)
	if !fault.Is(err, fault.Failed) || !strings.Contains(err.Error(), "EST server returned a certificate for a different key") {
		t.Fatalf("SimpleEnroll = %v, want Failed 'different key'", err)
	}
}

func TestInvalidCSRRefusedBeforeSending(t *testing.T) {
	ca := newCA(t, "EST CA")
	srv := newESTServer(t, ca, nil, func(w http.ResponseWriter, r *http.Request) { t.Error("invalid CSR was sent") })
	for _, csr := range [][]byte{nil, []byte("not a csr"), ca.Cert.Raw} {
		if _, err := srv.client(t, Config{}).SimpleEnroll(context.Background(), Auth{}, csr); !fault.Is(err, fault.InvalidArgs) {
			t.Errorf("SimpleEnroll(%q...) = %v, want InvalidArgs", csr[:min(len(csr), 8)], err)
		}
	}
}

func TestTimeoutAndUnreachableAreUnavailable(t *testing.T) {
	ca := newCA(t, "EST CA")
	release := make(chan struct{})
	srv := newESTServer(t, ca, nil, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	_, err := srv.client(t, Config{Timeout: 200 * time.Millisecond}).CACerts(context.Background(), Auth{})
	if !fault.Is(err, fault.Unavailable) || !strings.Contains(err.Error(), "no answer within 200ms") {
		t.Errorf("slow server: %v, want Unavailable 'no answer within 200ms'", err)
	}

	closed := newESTServer(t, ca, nil, nil)
	closed.Close()
	c := closed.client(t, Config{})
	_, err = c.CACerts(context.Background(), Auth{})
	if !fault.Is(err, fault.Unavailable) || !strings.Contains(err.Error(), "cannot be reached") {
		t.Errorf("closed server: %v, want Unavailable 'cannot be reached'", err)
	}
}

func TestRedirects(t *testing.T) {
	ca := newCA(t, "EST CA")
	elsewhere := newESTServer(t, ca, nil, func(w http.ResponseWriter, r *http.Request) {
		t.Error("followed a redirect to another origin")
	})
	var user string
	srv := newESTServer(t, ca, nil, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/est/cacerts":
			http.Redirect(w, r, "/v2/cacerts", http.StatusFound)
		case "/v2/cacerts":
			user, _, _ = r.BasicAuth()
			w.Header().Set("Content-Type", "application/pkcs7-mime")
			w.Write(certsOnly(t, ca.Cert))
		case "/.well-known/est/csrattrs":
			http.Redirect(w, r, elsewhere.URL+"/csrattrs", http.StatusTemporaryRedirect)
		}
	})
	c := srv.client(t, Config{})
	if _, err := c.CACerts(context.Background(), Auth{Username: "u", Password: "p"}); err != nil || user != "u" {
		t.Errorf("same-origin redirect: err=%v user=%q", err, user)
	}
	if _, err := c.CSRAttrs(context.Background(), Auth{}); !fault.Is(err, fault.Unavailable) || !strings.Contains(err.Error(), "not followed") {
		t.Errorf("cross-origin redirect: %v, want Unavailable 'not followed'", err)
	}
}
