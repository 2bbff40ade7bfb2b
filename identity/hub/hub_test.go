package hub

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/identity/sas"
	"github.com/edgev2/edgev2/internal/labcloud/labhost"
)

// Keys of the module identities; they must never show up in errors.
var (
	primary   = []byte("primary-module-key-0123456789abc")
	secondary = []byte("secondary-module-key-0123456789a")
)

const (
	primaryB64   = "cHJpbWFyeS1tb2R1bGUta2V5LTAxMjM0NTY3ODlhYmM="
	secondaryB64 = "c2Vjb25kYXJ5LW1vZHVsZS1rZXktMDEyMzQ1Njc4OWE="
)

// moduleJSON is a module as IoT Hub returns it, read-only fields included.
func moduleJSON(id, etag string) string {
	return `{"moduleId":"` + id + `","managedBy":"IotEdge","deviceId":"edge-1","generationId":"638500000000000000",
	"etag":"` + etag + `","connectionState":"Disconnected","connectionStateUpdatedTime":"0001-01-01T00:00:00Z",
	"lastActivityTime":"0001-01-01T00:00:00Z","cloudToDeviceMessageCount":0,
	"authentication":{"symmetricKey":{"primaryKey":"` + primaryB64 + `","secondaryKey":"` + secondaryB64 + `"},
	"x509Thumbprint":{"primaryThumbprint":null,"secondaryThumbprint":null},"type":"sas"}}`
}

func wantModule(id, etag string) *Module {
	return &Module{ModuleID: id, DeviceID: "edge-1", GenerationID: "638500000000000000", ETag: etag, ManagedBy: "IotEdge",
		Authentication: Authentication{Type: AuthSAS, PrimaryKey: primary, SecondaryKey: secondary}}
}

// checkDeviceToken verifies the Authorization header as IoT Hub would.
func checkDeviceToken(t *testing.T, auth, hub string) {
	t.Helper()
	if !strings.HasPrefix(auth, "SharedAccessSignature sr="+sas.Escape(hub+"/devices/edge-1")+"&sig=") || !strings.HasSuffix(auth, "&se=1714568400") {
		t.Fatalf("Authorization %q is not sr,sig,se without skn", auth)
	}
	p, err := sas.ParseToken(auth)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := hmacSigner(t, deviceKey)(context.Background(), []byte(p.Signed))
	if !hmac.Equal(p.Signature, want) || p.KeyName != "" || p.Resource != hub+"/devices/edge-1" {
		t.Fatalf("token does not verify: %+v", p)
	}
}

func TestCreateModuleWireFormat(t *testing.T) {
	f := newFakeHub(t, nil, fixed(200, moduleJSON("$edgeAgent", "MA==")))
	c := sasClient(t, f)
	m, err := c.CreateModule(context.Background(), "$edgeAgent", Authentication{Type: AuthSAS, PrimaryKey: primary, SecondaryKey: secondary}, "IotEdge")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m, wantModule("$edgeAgent", "MA==")) {
		t.Fatalf("module %+v", m)
	}
	r := f.Requests()[0]
	if r.Method != "PUT" || r.RawPath != "/devices/edge-1/modules/%24edgeAgent" || r.Query != "api-version=2021-04-12" {
		t.Fatalf("request %s %s?%s", r.Method, r.RawPath, r.Query)
	}
	want := `{"moduleId":"$edgeAgent","deviceId":"edge-1","managedBy":"IotEdge","authentication":{"symmetricKey":{"primaryKey":"` +
		primaryB64 + `","secondaryKey":"` + secondaryB64 + `"},"type":"sas"}}`
	if string(r.Body) != want {
		t.Fatalf("body\n got %s\nwant %s", r.Body, want)
	}
	if r.Header.Get("Content-Type") != "application/json; charset=utf-8" || r.Header.Get("Accept") != "application/json" ||
		r.Header.Get("User-Agent") != UserAgent || r.Header.Get("If-Match") != "" {
		t.Fatalf("headers %v", r.Header)
	}
	checkDeviceToken(t, r.Header.Get("Authorization"), hubName)
}

func TestCreateModuleLetsHubGenerateKeys(t *testing.T) {
	f := newFakeHub(t, nil, fixed(201, moduleJSON("m1", "MA==")))
	c := sasClient(t, f)
	m, err := c.CreateModule(context.Background(), "m1", Authentication{Type: AuthSAS}, "")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.Authentication.PrimaryKey, primary) {
		t.Fatalf("module %+v", m)
	}
	if got := string(f.Requests()[0].Body); got != `{"moduleId":"m1","deviceId":"edge-1","authentication":{"type":"sas"}}` {
		t.Fatalf("body %s", got)
	}
}

func TestCreateModuleWithThumbprints(t *testing.T) {
	f := newFakeHub(t, nil, fixed(200, `{"moduleId":"m1","deviceId":"edge-1","etag":"MQ==","authentication":{"x509Thumbprint":{"primaryThumbprint":"AB12","secondaryThumbprint":"CD34"},"type":"selfSigned"}}`))
	c := sasClient(t, f)
	m, err := c.CreateModule(context.Background(), "m1", Authentication{Type: AuthSelfSigned, PrimaryThumbprint: "AB12", SecondaryThumbprint: "CD34"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if m.Authentication.PrimaryThumbprint != "AB12" || m.Authentication.Type != AuthSelfSigned {
		t.Fatalf("module %+v", m)
	}
	want := `{"moduleId":"m1","deviceId":"edge-1","authentication":{"x509Thumbprint":{"primaryThumbprint":"AB12","secondaryThumbprint":"CD34"},"type":"selfSigned"}}`
	if got := string(f.Requests()[0].Body); got != want {
		t.Fatalf("body %s", got)
	}
}

func TestGetModule(t *testing.T) {
	f := newFakeHub(t, nil, fixed(200, moduleJSON("m1", "Mg==")))
	c := sasClient(t, f)
	m, err := c.GetModule(context.Background(), "m1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m, wantModule("m1", "Mg==")) {
		t.Fatalf("module %+v", m)
	}
	r := f.Requests()[0]
	if r.Method != "GET" || r.RawPath != "/devices/edge-1/modules/m1" || len(r.Body) != 0 || r.Header.Get("Content-Type") != "" {
		t.Fatalf("request %s %s body %q", r.Method, r.RawPath, r.Body)
	}
}

func TestListModules(t *testing.T) {
	f := newFakeHub(t, nil, fixed(200, "["+moduleJSON("$edgeAgent", "MA==")+","+moduleJSON("$edgeHub", "MQ==")+"]"))
	c := sasClient(t, f)
	ms, err := c.ListModules(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || !reflect.DeepEqual(ms[1], wantModule("$edgeHub", "MQ==")) {
		t.Fatalf("modules %+v", ms)
	}
	if r := f.Requests()[0]; r.Method != "GET" || r.RawPath != "/devices/edge-1/modules" || r.Query != "api-version=2021-04-12" {
		t.Fatalf("request %s %s?%s", r.Method, r.RawPath, r.Query)
	}
}

func TestListModulesEmpty(t *testing.T) {
	f := newFakeHub(t, nil, fixed(200, "[]"))
	ms, err := sasClient(t, f).ListModules(context.Background())
	if err != nil || len(ms) != 0 {
		t.Fatalf("modules %v, err %v", ms, err)
	}
}

func TestUpdateModuleSendsIfMatch(t *testing.T) {
	for etag, want := range map[string]string{"": "*", "MA==": `"MA=="`, `"MA=="`: `"MA=="`, "*": "*"} {
		t.Run(etag, func(t *testing.T) {
			f := newFakeHub(t, nil, fixed(200, moduleJSON("m1", "MQ==")))
			c := sasClient(t, f)
			in := wantModule("m1", etag)
			in.GenerationID = "ignored"
			m, err := c.UpdateModule(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			if m.ETag != "MQ==" {
				t.Fatalf("module %+v", m)
			}
			r := f.Requests()[0]
			if r.Method != "PUT" || r.Header.Get("If-Match") != want {
				t.Fatalf("%s If-Match %q, want %q", r.Method, r.Header.Get("If-Match"), want)
			}
			if strings.Contains(string(r.Body), "generationId") || strings.Contains(string(r.Body), "etag") {
				t.Fatalf("body carries read-only fields: %s", r.Body)
			}
		})
	}
}

func TestDeleteModule(t *testing.T) {
	for etag, want := range map[string]string{"": "*", "MA==": `"MA=="`} {
		f := newFakeHub(t, nil, fixed(204, ""))
		if err := sasClient(t, f).DeleteModule(context.Background(), "m1", etag); err != nil {
			t.Fatal(err)
		}
		r := f.Requests()[0]
		if r.Method != "DELETE" || r.RawPath != "/devices/edge-1/modules/m1" || r.Header.Get("If-Match") != want || len(r.Body) != 0 {
			t.Fatalf("request %s %s If-Match %q", r.Method, r.RawPath, r.Header.Get("If-Match"))
		}
	}
}

func TestStatusErrors(t *testing.T) {
	oldShape := func(code, msg string) string {
		return `{"Message":"ErrorCode:` + code + `;` + msg + `","ExceptionMessage":"Tracking ID:abc123-G:10-TimeStamp:05/01/2024 12:00:00"}`
	}
	newShape := func(code int, msg string) string {
		return fmt.Sprintf(`{"errorCode":%d,"trackingId":"trk-9","message":%q,"timestampUtc":"2024-05-01T12:00:00Z"}`, code, msg)
	}
	tests := []struct {
		name    string
		status  int
		header  map[string]string
		body    string
		kind    fault.Kind
		mention []string
	}{
		{"404 old shape", 404, nil, oldShape("ModuleNotFound", "Module m1 on device edge-1 not found"), fault.NotFound,
			[]string{"HTTP 404", "ModuleNotFound", "Tracking ID:abc123"}},
		{"404 new shape", 404, nil, newShape(404010, "Module not found"), fault.NotFound, []string{"404010", "Module not found", "trk-9"}},
		{"409", 409, nil, oldShape("ModuleAlreadyExistsOnDevice", "exists"), fault.AlreadyExists, []string{"HTTP 409", "ModuleAlreadyExistsOnDevice"}},
		{"412", 412, nil, oldShape("PreconditionFailed", "etag mismatch"), fault.AlreadyExists, []string{"HTTP 412", "read it again"}},
		{"401", 401, nil, newShape(401002, "Unauthorized"), fault.NotAuthorized, []string{"HTTP 401", "401002"}},
		{"403", 403, nil, oldShape("IotHubQuotaExceeded", "no"), fault.NotAuthorized, []string{"HTTP 403"}},
		{"400", 400, nil, oldShape("ArgumentInvalid", "bad"), fault.InvalidArgs, []string{"HTTP 400", "ArgumentInvalid"}},
		{"429", 429, nil, newShape(429001, "Throttled"), fault.Unavailable, []string{"HTTP 429"}},
		{"500", 500, nil, `{"Message":"boom"}`, fault.Unavailable, []string{"HTTP 500", "boom"}},
		{"503 html", 503, map[string]string{"Content-Type": "text/html"}, "<html>down</html>", fault.Unavailable, []string{"HTTP 503"}},
		{"nested network error", 502, nil, `{"message":"parent cannot reach hub","networkError":true}`, fault.Unavailable, []string{"cannot reach IoT Hub"}},
		{"418", 418, nil, "", fault.Failed, []string{"unexpected HTTP status 418"}},
		{"302", 302, map[string]string{"Location": "https://elsewhere/"}, "", fault.Failed, []string{"302"}},
		{"202", 202, nil, moduleJSON("m1", "MA=="), fault.Failed, []string{"unexpected HTTP status 202"}},
		{"html 200", 200, map[string]string{"Content-Type": "text/html"}, "<html><body>portal</body></html>", fault.Failed,
			[]string{"IoT Hub sent an invalid response", "text/html"}},
		{"truncated", 200, nil, moduleJSON("m1", "MA==")[:80], fault.Failed, []string{"IoT Hub sent an invalid response"}},
		{"empty", 200, nil, "", fault.Failed, []string{"empty"}},
		{"array instead of object", 200, nil, "[]", fault.Failed, []string{"not a JSON object"}},
		{"other module", 200, nil, moduleJSON("m2", "MA=="), fault.Failed, []string{`"m2"`}},
		{"unknown auth type", 200, nil, `{"moduleId":"m1","deviceId":"edge-1","authentication":{"type":"magic"}}`, fault.Failed, []string{`"magic"`}},
		{"key not base64", 200, nil, `{"moduleId":"m1","deviceId":"edge-1","authentication":{"type":"sas","symmetricKey":{"primaryKey":"!!"}}}`,
			fault.Failed, []string{"primaryKey is not base64"}},
		{"wrong type", 200, nil, `{"moduleId":7}`, fault.Failed, []string{"IoT Hub sent an invalid response"}},
		{"huge", 200, nil, `{"moduleId":"m1","pad":"` + strings.Repeat("x", MaxResponseSize) + `"}`, fault.Failed, []string{"larger than"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeHub(t, nil, func(seen) (int, map[string]string, string) { return tt.status, tt.header, tt.body })
			_, err := sasClient(t, f).GetModule(context.Background(), "m1")
			if err == nil || fault.KindOf(err) != tt.kind {
				t.Fatalf("err %v (kind %v), want kind %v", err, fault.KindOf(err), tt.kind)
			}
			for _, m := range tt.mention {
				if !strings.Contains(fault.Message(err), m) {
					t.Errorf("message %q does not mention %q", fault.Message(err), m)
				}
			}
			assertNoSecrets(t, fault.Message(err), f)
		})
	}
}

func assertNoSecrets(t *testing.T, msg string, f *fakeHub) {
	t.Helper()
	for _, s := range []string{primaryB64, secondaryB64, string(primary), deviceKey} {
		if strings.Contains(msg, s) {
			t.Fatalf("message leaks a key: %q", msg)
		}
	}
	for _, r := range f.Requests() {
		if auth := r.Header.Get("Authorization"); auth != "" {
			sig := auth[strings.Index(auth, "&sig=")+5 : strings.Index(auth, "&se=")]
			p, _ := sas.ParseToken(auth)
			if strings.Contains(msg, sig) || strings.Contains(msg, base64.StdEncoding.EncodeToString(p.Signature)) {
				t.Fatalf("message leaks the token signature: %q", msg)
			}
		}
	}
}

func TestErrorsNeverEchoKeysOrToken(t *testing.T) {
	f := newFakeHub(t, nil, func(r seen) (int, map[string]string, string) {
		// A hostile or careless server quoting back everything it got.
		return 400, nil, fmt.Sprintf(`{"Message":"rejected %s with %s"}`, strings.ReplaceAll(string(r.Body), `"`, `'`), r.Header.Get("Authorization"))
	})
	_, err := sasClient(t, f).CreateModule(context.Background(), "m1", Authentication{Type: AuthSAS, PrimaryKey: primary, SecondaryKey: secondary}, "")
	if !fault.Is(err, fault.InvalidArgs) {
		t.Fatalf("err %v", err)
	}
	assertNoSecrets(t, err.Error(), f)
	if !strings.Contains(err.Error(), "<redacted>") {
		t.Fatalf("expected redaction in %q", err)
	}
}

// TestErrorsNeverEchoTheDecodedTokenSignature: a server quoting back the
// token's signature decoded (base64, not as sent) does not get it into
// the client's error either.
func TestErrorsNeverEchoTheDecodedTokenSignature(t *testing.T) {
	f := newFakeHub(t, nil, func(r seen) (int, map[string]string, string) {
		p, _ := sas.ParseToken(r.Header.Get("Authorization"))
		return 401, nil, `{"Message":"signature ` + base64.StdEncoding.EncodeToString(p.Signature) + ` is wrong"}`
	})
	_, err := sasClient(t, f).CreateModule(context.Background(), "m1", Authentication{Type: AuthSAS, PrimaryKey: primary, SecondaryKey: secondary}, "")
	if !fault.Is(err, fault.NotAuthorized) || !strings.Contains(err.Error(), "is wrong") {
		t.Fatalf("err %v, want NotAuthorized quoting the hub's reason", err)
	}
	assertNoSecrets(t, err.Error(), f)
}

func TestX509DeviceAuthentication(t *testing.T) {
	ca := newCA(t, "device CA")
	f := newFakeHub(t, &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool()}, fixed(200, moduleJSON("m1", "MA==")))
	c, err := New(Config{HubHost: f.addr(), DeviceID: "edge-1", ClientCert: ca.ClientCert(t, "edge-1"), TrustAnchors: f.Anchors()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.GetModule(context.Background(), "m1"); err != nil {
		t.Fatal(err)
	}
	r := f.Requests()[0]
	if r.Header.Get("Authorization") != "" || len(r.PeerCerts) == 0 || r.PeerCerts[0].Subject.CommonName != "edge-1" {
		t.Fatalf("auth header %q, peer certs %d", r.Header.Get("Authorization"), len(r.PeerCerts))
	}
}

func TestX509RefusedCertificate(t *testing.T) {
	trusted, other := newCA(t, "trusted"), newCA(t, "other")
	f := newFakeHub(t, &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: trusted.Pool()}, fixed(200, "{}"))
	c, err := New(Config{HubHost: f.addr(), DeviceID: "edge-1", ClientCert: other.ClientCert(t, "edge-1"), TrustAnchors: f.Anchors()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ListModules(context.Background())
	if !fault.Is(err, fault.NotAuthorized) {
		t.Fatalf("err %v (kind %v)", err, fault.KindOf(err))
	}
}

func TestTokenAudienceIsHubHostWithoutGateway(t *testing.T) {
	f := newFakeHub(t, nil, fixed(200, "[]"))
	c, err := New(Config{HubHost: f.addr(), DeviceID: "edge-1", SAS: hmacSigner(t, deviceKey), TrustAnchors: f.Anchors(),
		Now: func() time.Time { return fixedNow }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListModules(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkDeviceToken(t, f.Requests()[0].Header.Get("Authorization"), f.addr())
}

func TestUntrustedHub(t *testing.T) {
	f := newFakeHub(t, nil, fixed(200, "[]"))
	c, err := New(Config{HubHost: f.addr(), DeviceID: "edge-1", SAS: hmacSigner(t, deviceKey), TrustAnchors: newCA(t, "x").Pool()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ListModules(context.Background())
	if !fault.Is(err, fault.Unavailable) || !strings.Contains(err.Error(), "not trusted") || len(f.Requests()) != 0 {
		t.Fatalf("err %v", err)
	}
}

func TestUnreachableHub(t *testing.T) {
	addr := labhost.Reserve(t).Name // nothing listens on its 443
	c, err := New(Config{HubHost: addr, DeviceID: "edge-1", SAS: hmacSigner(t, deviceKey), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteModule(context.Background(), "m1", ""); !fault.Is(err, fault.Unavailable) {
		t.Fatalf("err %v", err)
	}
}

func TestSignerFailureKeepsKind(t *testing.T) {
	f := newFakeHub(t, nil, fixed(200, "[]"))
	c, err := New(Config{HubHost: f.addr(), DeviceID: "edge-1", TrustAnchors: f.Anchors(),
		SAS: func(context.Context, []byte) ([]byte, error) {
			return nil, fault.New(fault.Unavailable, "Keys service is not running")
		}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListModules(context.Background()); !fault.Is(err, fault.Unavailable) || len(f.Requests()) != 0 {
		t.Fatalf("err %v", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	sign := hmacSigner(t, deviceKey)
	ca := newCA(t, "ca")
	notSigner := ca.ClientCert(t, "x")
	notSigner.PrivateKey = "key"
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no host", Config{DeviceID: "d", SAS: sign}, "host"},
		{"host with path", Config{HubHost: "h/x", DeviceID: "d", SAS: sign}, "host"},
		{"bad gateway", Config{HubHost: "h", GatewayHost: "a b", DeviceID: "d", SAS: sign}, "gateway"},
		{"host with port", Config{HubHost: "127.0.0.1:8443", DeviceID: "d", SAS: sign}, `IoT Hub host "127.0.0.1:8443" carries a port`},
		{"gateway with port", Config{HubHost: "h", GatewayHost: "parent:443", DeviceID: "d", SAS: sign}, `gateway host "parent:443" carries a port`},
		{"no device", Config{HubHost: "h", SAS: sign}, "device ID"},
		{"device with slash", Config{HubHost: "h", DeviceID: "a/b", SAS: sign}, "device ID"},
		{"no credentials", Config{HubHost: "h", DeviceID: "d"}, "no credentials"},
		{"two credentials", Config{HubHost: "h", DeviceID: "d", SAS: sign, ClientCert: ca.ClientCert(t, "d")}, "both"},
		{"key cannot sign", Config{HubHost: "h", DeviceID: "d", ClientCert: notSigner}, "cannot sign"},
		{"api version injection", Config{HubHost: "h", DeviceID: "d", SAS: sign, APIVersion: "x&y"}, "api-version"},
		{"negative timeout", Config{HubHost: "h", DeviceID: "d", SAS: sign, Timeout: -1}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if !fault.Is(err, fault.InvalidArgs) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want InvalidArgs mentioning %q", err, tt.want)
			}
		})
	}
}

func TestMethodsRejectBadArguments(t *testing.T) {
	f := newFakeHub(t, nil, fixed(200, "{}"))
	c := sasClient(t, f)
	ctx := context.Background()
	for name, err := range map[string]error{
		"empty module id":      func() error { _, err := c.GetModule(ctx, ""); return err }(),
		"module id with slash": func() error { _, err := c.CreateModule(ctx, "a/b", Authentication{}, ""); return err }(),
		"unknown auth type":    func() error { _, err := c.CreateModule(ctx, "m", Authentication{Type: "magic"}, ""); return err }(),
		"keys without sas": func() error {
			_, err := c.CreateModule(ctx, "m", Authentication{Type: AuthNone, PrimaryKey: primary}, "")
			return err
		}(),
		"thumbprint not hex": func() error {
			_, err := c.CreateModule(ctx, "m", Authentication{Type: AuthSelfSigned, PrimaryThumbprint: "zz"}, "")
			return err
		}(),
		"nil module":        func() error { _, err := c.UpdateModule(ctx, nil); return err }(),
		"etag with quote":   c.DeleteModule(ctx, "m", `a"b`),
		"etag with control": c.DeleteModule(ctx, "m", "a\nb"),
	} {
		if !fault.Is(err, fault.InvalidArgs) {
			t.Errorf("%s: err %v, want InvalidArgs", name, err)
		}
	}
	if n := len(f.Requests()); n != 0 {
		t.Fatalf("%d requests sent for invalid arguments", n)
	}
}

func TestAuthenticationFormattingHidesKeys(t *testing.T) {
	m := wantModule("m1", "MA==")
	for _, s := range []string{fmt.Sprint(m.Authentication), fmt.Sprintf("%v", m), fmt.Sprintf("%+v", m), fmt.Sprintf("%#v", m)} {
		if strings.Contains(s, string(primary)) || strings.Contains(s, fmt.Sprint(primary)) {
			t.Fatalf("formatting leaks the key: %s", s)
		}
	}
}
