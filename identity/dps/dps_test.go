package dps

import (
	"context"
	"crypto/hmac"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/identity/sas"
	"github.com/edgev2/edgev2/internal/cloudhttp"
	"github.com/edgev2/edgev2/internal/cloudhttp/cloudhttptest"
)

const (
	assigning = `{"operationId":"5.316aac5bdc130deb.b1e02da8-c3a0-4ff2-a121-7ea7a6b7f550","status":"assigning"}`
	assigned  = `{"operationId":"5.316aac5bdc130deb.b1e02da8-c3a0-4ff2-a121-7ea7a6b7f550","status":"assigned",
	  "registrationState":{"registrationId":"dev-1","createdDateTimeUtc":"2019-03-18T19:34:52.6512386Z",
	  "assignedHub":"myhub.azure-devices.net","deviceId":"dev-1","status":"assigned","substatus":"initialAssignment",
	  "lastUpdatedDateTimeUtc":"2019-03-18T19:34:53.0159297Z","etag":"IjAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMCI=",
	  "payload":{"modules":["a"]}}}`
)

func TestRegisterSymmetricKeyWireFormat(t *testing.T) {
	f := newFakeDPS(t, nil,
		reply{Status: 202, Header: map[string]string{"Retry-After": "3"}, Body: assigning},
		reply{Status: 202, Header: map[string]string{"Retry-After": "1"}, Body: assigning},
		reply{Status: 200, Body: assigned})
	var s sleepRecorder
	cfg := symmetricConfig(t, f, &s)
	res, err := Register(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := &Result{
		AssignedHub: "myhub.azure-devices.net", DeviceID: "dev-1", Substatus: "initialAssignment",
		ETag: "IjAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMCI=", RegistrationID: "dev-1",
		CreatedAt: time.Date(2019, 3, 18, 19, 34, 52, 651238600, time.UTC),
		UpdatedAt: time.Date(2019, 3, 18, 19, 34, 53, 15929700, time.UTC),
		Payload:   json.RawMessage(`{"modules":["a"]}`),
	}
	if !reflect.DeepEqual(res, want) {
		t.Fatalf("result\n got %+v\nwant %+v", res, want)
	}
	if got := s.Waits(); !reflect.DeepEqual(got, []time.Duration{3 * time.Second, time.Second}) {
		t.Fatalf("waits %v, want [3s 1s] from Retry-After", got)
	}

	reqs := f.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3", len(reqs))
	}
	put := reqs[0]
	if put.Method != "PUT" || put.RawPath != "/0ne00000001/registrations/dev-1/register" || put.Query != "api-version=2021-06-01" {
		t.Fatalf("register request %s %s?%s", put.Method, put.RawPath, put.Query)
	}
	if string(put.Body) != `{"registrationId":"dev-1"}` {
		t.Fatalf("register body %s", put.Body)
	}
	if ct := put.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Fatalf("Content-Type %q", ct)
	}
	for i, r := range reqs[1:] {
		if r.Method != "GET" || r.RawPath != "/0ne00000001/registrations/dev-1/operations/5.316aac5bdc130deb.b1e02da8-c3a0-4ff2-a121-7ea7a6b7f550" || r.Query != "api-version=2021-06-01" {
			t.Fatalf("poll %d: %s %s?%s", i, r.Method, r.RawPath, r.Query)
		}
		if len(r.Body) != 0 || r.Header.Get("Content-Type") != "" {
			t.Fatalf("poll %d has a body or Content-Type", i)
		}
	}
	for i, r := range reqs {
		if r.Header.Get("Accept") != "application/json" || r.Header.Get("User-Agent") != UserAgent {
			t.Fatalf("request %d headers %v", i, r.Header)
		}
		checkDPSToken(t, r.Header.Get("Authorization"))
	}
}

// checkDPSToken verifies a DPS registration token as DPS would.
func checkDPSToken(t *testing.T, auth string) {
	t.Helper()
	if !strings.HasPrefix(auth, "SharedAccessSignature sr=0ne00000001%2Fregistrations%2Fdev-1&sig=") ||
		!strings.HasSuffix(auth, "&se=1714568400&skn=registration") {
		t.Fatalf("Authorization %q is not sr,sig,se,skn in SDK order", auth)
	}
	p, err := sas.ParseToken(auth)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := hmacSigner(t, enrollmentKey)(context.Background(), []byte(p.Signed))
	if !hmac.Equal(p.Signature, want) || p.Signed != "0ne00000001%2Fregistrations%2Fdev-1\n1714568400" {
		t.Fatalf("token does not verify: signed %q", p.Signed)
	}
	if !p.Expiry.Equal(fixedNow.Add(DefaultTokenTTL)) {
		t.Fatalf("expiry %v", p.Expiry)
	}
}

func TestRegisterSendsPayloadAndAssignsAtOnce(t *testing.T) {
	f := newFakeDPS(t, nil, reply{Status: 200, Body: assigned})
	var s sleepRecorder
	cfg := symmetricConfig(t, f, &s)
	cfg.Payload = json.RawMessage(`{ "modelId" : "dtmi:x;1" }`)
	if _, err := Register(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if got := string(f.Requests()[0].Body); got != `{"registrationId":"dev-1","payload":{"modelId":"dtmi:x;1"}}` {
		t.Fatalf("body %s", got)
	}
	if len(s.Waits()) != 0 {
		t.Fatalf("waited %v for an immediate assignment", s.Waits())
	}
}

func TestRegisterPollIntervals(t *testing.T) {
	tests := []struct {
		name, retryAfter string
		want             time.Duration
	}{
		{"absent uses the default", "", DefaultPollInterval},
		{"zero polls at once", "0", 0},
		{"huge is capped", "86400", MaxRetryAfter},
		{"too many digits is capped", "99999999999999999999", MaxRetryAfter},
		{"garbage uses the default", "soon", DefaultPollInterval},
		{"HTTP-date against Date", "Wed, 01 May 2024 12:00:07 GMT", 7 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := map[string]string{"Date": "Wed, 01 May 2024 12:00:00 GMT"}
			if tt.retryAfter != "" {
				h["Retry-After"] = tt.retryAfter
			}
			f := newFakeDPS(t, nil, reply{Status: 202, Header: h, Body: assigning}, reply{Status: 200, Body: assigned})
			var s sleepRecorder
			if _, err := Register(context.Background(), symmetricConfig(t, f, &s)); err != nil {
				t.Fatal(err)
			}
			if got := s.Waits(); len(got) != 1 || got[0] != tt.want {
				t.Fatalf("waits %v, want [%v]", got, tt.want)
			}
		})
	}
}

func TestPollSchedule(t *testing.T) {
	tests := []struct {
		name       string
		waitsSoFar int
		retryAfter time.Duration
		want       time.Duration
	}{
		{"first wait honours 0", 0, 0, 0},
		{"first wait honours 1 s", 0, time.Second, time.Second},
		{"second wait after 0 has the first floor", 1, 0, 50 * time.Millisecond},
		{"the floor doubles", 2, 0, 100 * time.Millisecond},
		{"and doubles", 5, 0, 800 * time.Millisecond},
		{"up to a second", 6, 0, time.Second},
		{"and stays there", 59, 0, time.Second},
		{"a Retry-After above the floor is kept", 2, 300 * time.Millisecond, 300 * time.Millisecond},
		{"DPS's usual 3 s is kept late on", 40, 3 * time.Second, 3 * time.Second},
		{"a long Retry-After is capped", 0, 10 * time.Minute, MaxRetryAfter},
		{"a huge wait count does not overflow", math.MaxInt, 0, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pollWait(tt.waitsSoFar, tt.retryAfter); got != tt.want {
				t.Fatalf("pollWait(%d, %v) = %v, want %v", tt.waitsSoFar, tt.retryAfter, got, tt.want)
			}
		})
	}
}

// A DPS that answers "assigning" with Retry-After 0 forever is polled a
// bounded number of times per second: the requests' times are the sums of
// the waits before them (the sleeper only records), so no clock is read.
func TestRegisterZeroRetryAfterForeverIsNoHotLoop(t *testing.T) {
	f := newFakeDPS(t, nil, reply{Status: 202, Header: map[string]string{"Retry-After": "0"}, Body: assigning})
	var s sleepRecorder
	cfg := symmetricConfig(t, f, &s)
	_, err := Register(context.Background(), cfg)
	if !fault.Is(err, fault.Unavailable) {
		t.Fatalf("err %v, want Unavailable after %d polls", err, DefaultMaxPolls)
	}
	waits := s.Waits()
	if len(f.Requests()) != DefaultMaxPolls+1 || len(waits) != DefaultMaxPolls {
		t.Fatalf("%d requests, %d waits; want %d and %d", len(f.Requests()), len(waits), DefaultMaxPolls+1, DefaultMaxPolls)
	}
	at := []time.Duration{0} // the PUT
	for _, w := range waits {
		at = append(at, at[len(at)-1]+w)
	}
	if waits[0] != 0 {
		t.Fatalf("first wait %v: Retry-After 0 should poll at once", waits[0])
	}
	for i, t0 := range at {
		n := 0
		for _, t1 := range at[i:] {
			if t1 < t0+time.Second {
				n++
			}
		}
		limit := 2 // in any second after the first
		if t0 < time.Second {
			limit = 6
		}
		if n > limit {
			t.Fatalf("%d requests in the second from %v (limit %d); times %v", n, t0, limit, at)
		}
	}
	if total := at[len(at)-1]; total < time.Duration(DefaultMaxPolls-10)*time.Second {
		t.Fatalf("gave up after %v of waiting: the floor did not rise to a second", total)
	}
}

func TestRegisterRetriesThrottledRequests(t *testing.T) {
	throttled := reply{Status: 429, Header: map[string]string{"Retry-After": "5"},
		Body: `{"errorCode":429001,"trackingId":"t-1","message":"Operations are being throttled"}`}
	f := newFakeDPS(t, nil, throttled,
		reply{Status: 202, Header: map[string]string{"Retry-After": "2"}, Body: assigning},
		throttled,
		reply{Status: 200, Body: assigned})
	var s sleepRecorder
	res, err := Register(context.Background(), symmetricConfig(t, f, &s))
	if err != nil {
		t.Fatal(err)
	}
	if res.DeviceID != "dev-1" {
		t.Fatalf("result %+v", res)
	}
	if got := s.Waits(); !reflect.DeepEqual(got, []time.Duration{5 * time.Second, 2 * time.Second, 5 * time.Second}) {
		t.Fatalf("waits %v, want [5s 2s 5s]", got)
	}
	reqs := f.Requests()
	if len(reqs) != 4 || reqs[0].Method != "PUT" || reqs[1].Method != "PUT" || reqs[2].Method != "GET" || reqs[3].Method != "GET" {
		t.Fatalf("requests %v", reqs)
	}
}

func TestRegisterGivesUpAfterMaxPolls(t *testing.T) {
	for name, rep := range map[string]reply{
		"throttled":      {Status: 429, Body: `{"errorCode":429001,"message":"throttled"}`},
		"assigning":      {Status: 202, Body: assigning},
		"unassigned 200": {Status: 200, Body: `{"operationId":"op","status":"unassigned"}`},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakeDPS(t, nil, rep)
			var s sleepRecorder
			cfg := symmetricConfig(t, f, &s)
			cfg.MaxPolls = 4
			_, err := Register(context.Background(), cfg)
			if !fault.Is(err, fault.Unavailable) || !strings.Contains(err.Error(), "after 4 polls") {
				t.Fatalf("err %v, want Unavailable after 4 polls", err)
			}
			if len(s.Waits()) != 4 || len(f.Requests()) != 5 {
				t.Fatalf("%d waits, %d requests", len(s.Waits()), len(f.Requests()))
			}
		})
	}
}

func TestRegisterStatusErrors(t *testing.T) {
	dpsErr := func(code int, msg string) string {
		b, _ := json.Marshal(map[string]any{"errorCode": code, "trackingId": "trk-42", "message": msg, "timestampUtc": "2024-05-01T12:00:00.000Z"})
		return string(b)
	}
	tests := []struct {
		name    string
		rep     reply
		kind    fault.Kind
		mention []string
	}{
		{"401 with DPS error", reply{Status: 401, Body: dpsErr(401002, "The request authorization key is not valid.")},
			fault.NotAuthorized, []string{"HTTP 401", "401002", "The request authorization key is not valid.", "trk-42"}},
		{"403", reply{Status: 403, Body: dpsErr(403001, "forbidden")}, fault.NotAuthorized, []string{"HTTP 403"}},
		{"404", reply{Status: 404, Body: dpsErr(404201, "Enrollment not found")}, fault.NotFound, []string{"404201", "Enrollment not found"}},
		{"400", reply{Status: 400, Body: dpsErr(400004, "Bad payload")}, fault.InvalidArgs, []string{"HTTP 400", "Bad payload"}},
		{"500", reply{Status: 500, Body: dpsErr(500000, "Internal")}, fault.Unavailable, []string{"HTTP 500"}},
		{"503 html", reply{Status: 503, Header: map[string]string{"Content-Type": "text/html"}, Body: "<html><body>down</body></html>"},
			fault.Unavailable, []string{"HTTP 503"}},
		{"418 text", reply{Status: 418, Header: map[string]string{"Content-Type": "text/plain"}, Body: "I'm a teapot\r\n"},
			fault.Failed, []string{"HTTP status 418", "I'm a teapot"}},
		{"302 not followed", reply{Status: 302, Header: map[string]string{"Location": "https://elsewhere.example/"}}, fault.Failed, []string{"302"}},
		{"html 200", reply{Status: 200, Header: map[string]string{"Content-Type": "text/html"}, Body: "<html><body>captive portal</body></html>"},
			fault.Failed, []string{"DPS sent an invalid response", "not a JSON object", "text/html"}},
		{"truncated JSON", reply{Status: 200, Body: assigned[:60]}, fault.Failed, []string{"DPS sent an invalid response"}},
		{"empty 200", reply{Status: 200, Body: ""}, fault.Failed, []string{"DPS sent an invalid response", "empty"}},
		{"trailing garbage", reply{Status: 200, Body: assigned + "}"}, fault.Failed, []string{"after the JSON object"}},
		{"unknown status", reply{Status: 200, Body: `{"operationId":"x","status":"weird"}`}, fault.Failed, []string{`"weird"`}},
		{"status of wrong type", reply{Status: 200, Body: `{"operationId":"x","status":7}`}, fault.Failed, []string{"DPS sent an invalid response"}},
		{"assigned without state", reply{Status: 200, Body: `{"operationId":"x","status":"assigned"}`}, fault.Failed, []string{"no registrationState"}},
		{"assigned without hub", reply{Status: 200, Body: `{"operationId":"x","status":"assigned","registrationState":{"deviceId":"d"}}`},
			fault.Failed, []string{"lacks assignedHub"}},
		{"hub with a path", reply{Status: 200, Body: `{"operationId":"x","status":"assigned","registrationState":{"deviceId":"d","assignedHub":"evil.example/x?y"}}`},
			fault.Failed, []string{"not a DNS host name"}},
		{"hub with a port", reply{Status: 200, Body: `{"operationId":"x","status":"assigned","registrationState":{"deviceId":"d","assignedHub":"127.0.0.1:8443"}}`},
			fault.Failed, []string{`assignedHub "127.0.0.1:8443" carries a port`}},
		{"assigning without operation id", reply{Status: 202, Body: `{"status":"assigning"}`}, fault.Failed, []string{"no operationId"}},
		{"someone else's registration", reply{Status: 200, Body: strings.Replace(assigned, `"registrationId":"dev-1"`, `"registrationId":"dev-2"`, 1)},
			fault.Failed, []string{`"dev-2"`}},
		{"huge body", reply{Status: 200, Body: `{"operationId":"x","status":"assigning","pad":"` + strings.Repeat("A", MaxResponseSize) + `"}`},
			fault.Failed, []string{"larger than"}},
		{"failed 401xxx", reply{Status: 200, Body: `{"operationId":"x","status":"failed","registrationState":{"registrationId":"dev-1","status":"failed","errorCode":401002,"errorMessage":"key mismatch"}}`},
			fault.NotAuthorized, []string{"401002", "key mismatch", "failed"}},
		{"failed custom allocation", reply{Status: 200, Body: `{"operationId":"x","status":"failed","registrationState":{"registrationId":"dev-1","status":"failed","errorCode":400209,"errorMessage":"Custom allocation failed with status code: 400"}}`},
			fault.InvalidArgs, []string{"400209", "Custom allocation failed"}},
		{"failed without state", reply{Status: 200, Body: `{"operationId":"x","status":"failed"}`}, fault.Failed, []string{"no reason given"}},
		{"disabled", reply{Status: 200, Body: `{"operationId":"x","status":"disabled","registrationState":{"registrationId":"dev-1","status":"disabled"}}`},
			fault.NotAuthorized, []string{"disabled"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeDPS(t, nil, tt.rep)
			var s sleepRecorder
			_, err := Register(context.Background(), symmetricConfig(t, f, &s))
			if err == nil || fault.KindOf(err) != tt.kind {
				t.Fatalf("err %v (kind %v), want kind %v", err, fault.KindOf(err), tt.kind)
			}
			msg := fault.Message(err)
			for _, m := range tt.mention {
				if !strings.Contains(msg, m) {
					t.Errorf("message %q does not mention %q", msg, m)
				}
			}
			assertNoSecrets(t, msg, f)
		})
	}
}

// assertNoSecrets fails if msg holds any part of a token the client sent.
func assertNoSecrets(t *testing.T, msg string, f *fakeDPS) {
	t.Helper()
	for _, r := range f.Requests() {
		if auth := r.Header.Get("Authorization"); auth != "" {
			p, _ := sas.ParseToken(auth)
			sig := auth[strings.Index(auth, "sig=")+4 : strings.Index(auth, "&se=")]
			if strings.Contains(msg, sig) || strings.Contains(msg, string(p.Signature)) || strings.Contains(msg, base64.StdEncoding.EncodeToString(p.Signature)) {
				t.Fatalf("message leaks the token signature: %q", msg)
			}
		}
	}
	if strings.Contains(msg, enrollmentKey[:12]) {
		t.Fatalf("message leaks the key: %q", msg)
	}
}

func TestRegisterScrubsEchoedSignature(t *testing.T) {
	f := newFakeDPS(t, nil, reply{Status: 401,
		Body: `{"errorCode":401002,"trackingId":"t","message":"bad token SharedAccessSignature sr=x&sig=c2VjcmV0c2ln%3D&se=1"}`})
	var s sleepRecorder
	_, err := Register(context.Background(), symmetricConfig(t, f, &s))
	if !fault.Is(err, fault.NotAuthorized) || strings.Contains(err.Error(), "c2VjcmV0c2ln") || !strings.Contains(err.Error(), "sig=<redacted>") {
		t.Fatalf("err %v", err)
	}
}

func TestRegisterWithX509Attestation(t *testing.T) {
	ca := newCA(t, "device CA")
	f := newFakeDPS(t, &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool()},
		reply{Status: 202, Body: assigning}, reply{Status: 200, Body: assigned})
	var s sleepRecorder
	cfg := symmetricConfig(t, f, &s)
	cfg.SAS = nil
	cfg.ClientCert = ca.ClientCert(t, "dev-1")
	res, err := Register(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.AssignedHub != "myhub.azure-devices.net" {
		t.Fatalf("result %+v", res)
	}
	for i, r := range f.Requests() {
		if r.Header.Get("Authorization") != "" {
			t.Fatalf("request %d sent Authorization with X.509 attestation", i)
		}
		if len(r.PeerCerts) == 0 || r.PeerCerts[0].Subject.CommonName != "dev-1" {
			t.Fatalf("request %d: client certificate not presented", i)
		}
	}
	if string(f.Requests()[0].Body) != `{"registrationId":"dev-1"}` {
		t.Fatalf("body %s", f.Requests()[0].Body)
	}
}

func TestRegisterWithRefusedClientCertificate(t *testing.T) {
	trusted, other := newCA(t, "trusted CA"), newCA(t, "other CA")
	f := newFakeDPS(t, &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: trusted.Pool()}, reply{Status: 200, Body: assigned})
	var s sleepRecorder
	cfg := symmetricConfig(t, f, &s)
	cfg.SAS = nil
	cfg.ClientCert = other.ClientCert(t, "dev-1")
	_, err := Register(context.Background(), cfg)
	if !fault.Is(err, fault.NotAuthorized) {
		t.Fatalf("err %v (kind %v), want NotAuthorized", err, fault.KindOf(err))
	}
}

func TestRegisterRefusesUntrustedServer(t *testing.T) {
	f := newFakeDPS(t, nil, reply{Status: 200, Body: assigned})
	var s sleepRecorder
	cfg := symmetricConfig(t, f, &s)
	cfg.TrustAnchors = newCA(t, "unrelated").Pool()
	registerFailsUnsent(t, f, cfg, fault.Unavailable, "not trusted")
}

// registerFailsUnsent: Register with cfg fails as kind, saying text, and
// no request reached f.
func registerFailsUnsent(t *testing.T, f *fakeDPS, cfg Config, kind fault.Kind, text string) {
	t.Helper()
	_, err := Register(context.Background(), cfg)
	if !fault.Is(err, kind) || !strings.Contains(err.Error(), text) {
		t.Fatalf("err %v; want %v saying %q", err, kind, text)
	}
	if len(f.Requests()) != 0 {
		t.Fatal("a request reached the server")
	}
}

func TestRegisterUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var s sleepRecorder
	_, err = Register(context.Background(), Config{Endpoint: "https://" + addr, IDScope: "0ne1", RegistrationID: "d",
		SAS: hmacSigner(t, enrollmentKey), Sleep: s.Sleep})
	if !fault.Is(err, fault.Unavailable) || !strings.Contains(err.Error(), "cannot be reached") {
		t.Fatalf("err %v", err)
	}
}

func TestRegisterStopsWhenContextEnds(t *testing.T) {
	f := newFakeDPS(t, nil, reply{Status: 202, Body: assigning})
	ctx, cancel := context.WithCancel(context.Background())
	var s sleepRecorder
	cfg := symmetricConfig(t, f, &s)
	cfg.Sleep = func(ctx context.Context, d time.Duration) error { cancel(); return ctx.Err() }
	_, err := Register(ctx, cfg)
	if !fault.Is(err, fault.Unavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
}

func TestRegisterSignerFailure(t *testing.T) {
	f := newFakeDPS(t, nil, reply{Status: 200, Body: assigned})
	var s sleepRecorder
	cfg := symmetricConfig(t, f, &s)
	cfg.SAS = func(context.Context, []byte) ([]byte, error) {
		return nil, fault.New(fault.NotAuthorized, "key %q may not be used by this caller", "dps-enrollment")
	}
	registerFailsUnsent(t, f, cfg, fault.NotAuthorized, "SAS token")
}

func TestRegisterKeepsEndpointPathPrefixAndEscapes(t *testing.T) {
	f := newFakeDPS(t, nil, reply{Status: 200, Body: strings.ReplaceAll(assigned, `"registrationId":"dev-1"`, `"registrationId":"Dev:1.a_b"`)})
	var s sleepRecorder
	cfg := symmetricConfig(t, f, &s)
	cfg.Endpoint = f.URL + "/dps/"
	cfg.RegistrationID = "Dev:1.a_b"
	cfg.APIVersion = "2019-03-31"
	if _, err := Register(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	r := f.Requests()[0]
	if r.RawPath != "/dps/0ne00000001/registrations/Dev%3A1.a_b/register" || r.Query != "api-version=2019-03-31" {
		t.Fatalf("request %s?%s", r.RawPath, r.Query)
	}
	p, _ := sas.ParseToken(r.Header.Get("Authorization"))
	if p.Resource != "0ne00000001/registrations/Dev:1.a_b" {
		t.Fatalf("token resource %q", p.Resource)
	}
}

func TestRegisterRejectsBadConfig(t *testing.T) {
	sign := hmacSigner(t, enrollmentKey)
	ca := newCA(t, "ca")
	good := Config{IDScope: "0ne00000001", RegistrationID: "dev-1", SAS: sign}
	plainKey := ca.ClientCert(t, "x")
	plainKey.PrivateKey = struct{}{}
	tests := []struct {
		name    string
		mod     func(*Config)
		mention string
	}{
		{"http endpoint", func(c *Config) { c.Endpoint = "http://dps.example" }, "https://"},
		{"endpoint with credentials", func(c *Config) { c.Endpoint = "https://u:p@dps.example" }, "credentials"},
		{"endpoint with query", func(c *Config) { c.Endpoint = "https://dps.example/?x=1" }, "query"},
		{"no scope", func(c *Config) { c.IDScope = "" }, "ID scope"},
		{"scope with slash", func(c *Config) { c.IDScope = "0ne/../x" }, "ID scope"},
		{"no registration id", func(c *Config) { c.RegistrationID = "" }, "registration ID"},
		{"registration id with slash", func(c *Config) { c.RegistrationID = "a/b" }, "registration ID"},
		{"registration id ends with dash", func(c *Config) { c.RegistrationID = "abc-" }, "start and end"},
		{"registration id too long", func(c *Config) { c.RegistrationID = strings.Repeat("a", 129) }, "128"},
		{"api version injection", func(c *Config) { c.APIVersion = "1&x=y" }, "api-version"},
		{"no attestation", func(c *Config) { c.SAS = nil }, "no attestation"},
		{"two attestations", func(c *Config) { c.ClientCert = ca.ClientCert(t, "d") }, "both"},
		{"key cannot sign", func(c *Config) { c.SAS = nil; c.ClientCert = plainKey }, "cannot sign"},
		{"empty certificate", func(c *Config) { c.SAS = nil; c.ClientCert = &tls.Certificate{} }, "no certificate data"},
		{"payload not JSON", func(c *Config) { c.Payload = json.RawMessage("{") }, "payload"},
		{"negative timeout", func(c *Config) { c.Timeout = -1 }, "negative"},
		{"negative polls", func(c *Config) { c.MaxPolls = -1 }, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.mod(&c)
			_, err := Register(context.Background(), c)
			if !fault.Is(err, fault.InvalidArgs) || !strings.Contains(err.Error(), tt.mention) {
				t.Fatalf("err %v, want InvalidArgs mentioning %q", err, tt.mention)
			}
		})
	}
}

// TestErrorsNeverEchoTheTokenSignature: a hostile or careless DPS (or a
// proxy in front of it) quoting back the request's SAS signature, as sent
// (URL-escaped) or decoded, in a JSON or text error body or in a failed
// registration's errorMessage: the client's error names the refusal and
// holds no part of the signature, as the IoT Hub client's already does.
func TestErrorsNeverEchoTheTokenSignature(t *testing.T) {
	echo := func(shape string) func(r *http.Request) (int, string, string) {
		return func(r *http.Request) (int, string, string) {
			auth := r.Header.Get("Authorization")
			escaped := auth[strings.Index(auth, "sig=")+4 : strings.Index(auth, "&se=")]
			decoded, _ := url.QueryUnescape(escaped)
			switch shape {
			case "json escaped":
				return 401, "application/json", `{"errorCode":401002,"trackingId":"t","message":"signature ` + escaped + ` is wrong"}`
			case "json decoded":
				return 401, "application/json", `{"errorCode":401002,"trackingId":"t","message":"signature ` + decoded + ` is wrong"}`
			case "text decoded":
				return 403, "text/plain", "denied: signature " + decoded + " is wrong"
			case "cut in the middle": // the quote's length limit falls inside the signature
				return 401, "application/json", `{"errorCode":401002,"trackingId":"t","message":"is wrong: ` + strings.Repeat("x", cloudhttp.MaxReasonLen-30) + " " + decoded + `"}`
			default: // a failed registration quoting it
				return 200, "application/json", `{"operationId":"x","status":"failed","registrationState":{"registrationId":"dev-1","status":"failed","errorCode":401002,"errorMessage":"signature ` + decoded + ` is wrong"}}`
			}
		}
	}
	for _, shape := range []string{"json escaped", "json decoded", "text decoded", "cut in the middle", "failed registration"} {
		t.Run(shape, func(t *testing.T) {
			answer := echo(shape)
			f := cloudhttptest.NewServer(t, nil, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				status, ct, body := answer(r)
				w.Header().Set("Content-Type", ct)
				w.WriteHeader(status)
				w.Write([]byte(body))
			}))
			var s sleepRecorder
			_, err := Register(context.Background(), symmetricConfig(t, f, &s))
			if !fault.Is(err, fault.NotAuthorized) || !strings.Contains(err.Error(), "is wrong") {
				t.Fatalf("err %v, want NotAuthorized quoting DPS's reason", err)
			}
			assertNoSecrets(t, err.Error(), f)
			for _, r := range f.Requests() {
				p, _ := sas.ParseToken(r.Header.Get("Authorization"))
				if b64 := base64.StdEncoding.EncodeToString(p.Signature); strings.Contains(err.Error(), b64[:12]) {
					t.Fatalf("message leaks part of the token signature: %q", err)
				}
			}
		})
	}
}
