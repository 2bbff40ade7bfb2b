package hub_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgev2/edgev2/internal/labcloud"
	"github.com/edgev2/edgev2/internal/labcloud/hub"
	"github.com/edgev2/edgev2/internal/testpki"
)

const (
	policyKey = "c2VydmljZS1wb2xpY3kta2V5LTAxMjM0NTY3ODlhYmM="
	edgeKey   = "ZWRnZS1kZXZpY2Uta2V5LTAxMjM0NTY3ODlhYmNkZWY="
	otherKey  = "b3RoZXItZGV2aWNlLWtleS0wMTIzNDU2Nzg5YWJjZGU="
	api       = "?api-version=2021-04-12"
)

// token computes a SAS as the Azure docs describe, independently of the
// package: sr = URL-encoded resource, sig = base64(HMAC-SHA256(key, sr\nse)).
func token(t *testing.T, keyB64, resource string, ttl time.Duration, skn string) string {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(keyB64)
	if err != nil {
		t.Fatal(err)
	}
	sr := url.QueryEscape(resource)
	se := strconv.FormatInt(time.Now().Add(ttl).Unix(), 10)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(sr + "\n" + se))
	tok := "SharedAccessSignature sr=" + sr + "&sig=" + url.QueryEscape(base64.StdEncoding.EncodeToString(m.Sum(nil))) + "&se=" + se
	if skn != "" {
		tok += "&skn=" + skn
	}
	return tok
}

type env struct {
	c  *labcloud.Cloud
	cl *http.Client
}

func start(t *testing.T, devices ...hub.DeviceConfig) *env {
	t.Helper()
	devices = append(devices, hub.DeviceConfig{DeviceID: "edge-1", PrimaryKey: edgeKey, EdgeEnabled: true},
		hub.DeviceConfig{DeviceID: "other", PrimaryKey: otherKey})
	c := labcloud.StartTestCloud(t, labcloud.Config{Hub: hub.Config{ServicePolicyKey: policyKey, Devices: devices}})
	return &env{c: c, cl: c.Client(t, nil)}
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return m
}

func (e *env) do(t *testing.T, method, path, auth string, hdr map[string]string, body any) resp {
	return do(t, e.cl, e.c.URL, method, path, auth, hdr, body)
}

func do(t *testing.T, cl *http.Client, base, method, path, auth string, hdr map[string]string, body any) resp {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, _ := json.Marshal(b)
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	return resp{res.StatusCode, res.Header, data}
}

func (e *env) service(t *testing.T) string {
	return token(t, policyKey, e.c.HubHostname, time.Hour, "iothubowner")
}

// wantHubError checks IoT Hub's error shape and code.
func wantHubError(t *testing.T, r resp, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	m := r.json(t)
	if len(m) != 2 || !strings.HasPrefix(m["Message"].(string), "ErrorCode:"+code+";") || !strings.HasPrefix(m["ExceptionMessage"].(string), "Tracking ID:") {
		t.Errorf("error body %s, want {Message: ErrorCode:%s;..., ExceptionMessage: Tracking ID:...}", r.body, code)
	}
	if got := r.header.Get("iothub-errorcode"); got != code {
		t.Errorf("iothub-errorcode %q, want %q", got, code)
	}
}

func TestModuleCRUDWithEtagsAndIfMatch(t *testing.T) {
	e := start(t)
	svc := e.service(t)
	path := "/devices/edge-1/modules/mod-a" + api
	r := e.do(t, "PUT", path, svc, nil, map[string]any{"moduleId": "mod-a", "deviceId": "edge-1", "managedBy": "IotEdge"})
	if r.status != 200 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	created := r.json(t)
	etag1, gen := created["etag"].(string), created["generationId"].(string)
	auth := created["authentication"].(map[string]any)
	if created["moduleId"] != "mod-a" || created["deviceId"] != "edge-1" || created["managedBy"] != "IotEdge" || len(gen) != 18 || etag1 == "" ||
		auth["type"] != "sas" || auth["symmetricKey"].(map[string]any)["primaryKey"] == nil || created["connectionState"] != "Disconnected" ||
		created["lastActivityTime"] != "0001-01-01T00:00:00Z" {
		t.Errorf("created module %s", r.body)
	}
	if r.header.Get("ETag") != `"`+etag1+`"` {
		t.Errorf("ETag header %q, want %q", r.header.Get("ETag"), `"`+etag1+`"`)
	}
	wantHubError(t, e.do(t, "PUT", path, svc, nil, map[string]any{"moduleId": "mod-a"}), 409, "ModuleAlreadyExistsOnDevice")

	r = e.do(t, "PUT", path, svc, map[string]string{"If-Match": `"` + etag1 + `"`}, map[string]any{"moduleId": "mod-a", "managedBy": "me"})
	if r.status != 200 {
		t.Fatalf("update: %d %s", r.status, r.body)
	}
	updated := r.json(t)
	if updated["generationId"] != gen || updated["etag"] == etag1 || updated["managedBy"] != "me" ||
		updated["authentication"].(map[string]any)["symmetricKey"].(map[string]any)["primaryKey"] != auth["symmetricKey"].(map[string]any)["primaryKey"] {
		t.Errorf("update changed generationId or kept etag or lost keys: %s", r.body)
	}
	wantHubError(t, e.do(t, "PUT", path, svc, map[string]string{"If-Match": `"` + etag1 + `"`}, map[string]any{}), 412, "PreconditionFailed")
	if r := e.do(t, "PUT", path, svc, map[string]string{"If-Match": "*"}, map[string]any{"authentication": map[string]any{"type": "none"}}); r.status != 200 {
		t.Errorf("If-Match * update: %d %s", r.status, r.body)
	}
	wantHubError(t, e.do(t, "PUT", "/devices/edge-1/modules/ghost"+api, svc, map[string]string{"If-Match": "*"}, map[string]any{}), 404, "ModuleNotFound")

	e.do(t, "PUT", "/devices/edge-1/modules/mod-b"+api, svc, nil, map[string]any{})
	r = e.do(t, "GET", "/devices/edge-1/modules"+api, svc, nil, nil)
	var list []hub.Module
	if err := json.Unmarshal(r.body, &list); err != nil || r.status != 200 || len(list) != 2 || list[0].ModuleID != "mod-a" || list[1].ModuleID != "mod-b" {
		t.Errorf("list: %d %s", r.status, r.body)
	}
	wantHubError(t, e.do(t, "DELETE", path, svc, map[string]string{"If-Match": `"` + etag1 + `"`}, nil), 412, "PreconditionFailed")
	cur, _ := e.c.Hub.Module("edge-1", "mod-a")
	if r := e.do(t, "DELETE", path, svc, map[string]string{"If-Match": `"` + cur.Etag + `"`}, nil); r.status != 204 {
		t.Errorf("delete: %d %s", r.status, r.body)
	}
	wantHubError(t, e.do(t, "GET", path, svc, nil, nil), 404, "ModuleNotFound")
	wantHubError(t, e.do(t, "GET", "/devices/nobody/modules/x"+api, svc, nil, nil), 404, "DeviceNotFound")
	wantHubError(t, e.do(t, "GET", "/devices/edge-1/modules/x?api-version=1999-01-01", svc, nil, nil), 400, "InvalidProtocolVersion")
}

func TestDeviceSASManagesOnlyItsOwnModules(t *testing.T) {
	e := start(t)
	own := token(t, edgeKey, e.c.HubHostname+"/devices/edge-1", time.Hour, "")
	if r := e.do(t, "PUT", "/devices/edge-1/modules/m1"+api, own, nil, map[string]any{}); r.status != 200 {
		t.Fatalf("own module: %d %s", r.status, r.body)
	}
	if r := e.do(t, "GET", "/devices/edge-1/modules"+api, own, nil, nil); r.status != 200 {
		t.Errorf("own list: %d %s", r.status, r.body)
	}
	for name, c := range map[string]struct{ path, auth string }{
		"other device's modules":      {"/devices/other/modules/m1", own},
		"token for another device":    {"/devices/edge-1/modules/m2", token(t, otherKey, e.c.HubHostname+"/devices/other", time.Hour, "")},
		"token signed with wrong key": {"/devices/edge-1/modules/m2", token(t, otherKey, e.c.HubHostname+"/devices/edge-1", time.Hour, "")},
		"expired token":               {"/devices/edge-1/modules/m2", token(t, edgeKey, e.c.HubHostname+"/devices/edge-1", -time.Minute, "")},
		"token for another hub":       {"/devices/edge-1/modules/m2", token(t, edgeKey, "elsewhere.example/devices/edge-1", time.Hour, "")},
		"no credentials":              {"/devices/edge-1/modules/m2", ""},
		"wrong service key":           {"/devices/edge-1/modules/m2", token(t, otherKey, e.c.HubHostname, time.Hour, "iothubowner")},
	} {
		t.Run(name, func(t *testing.T) {
			wantHubError(t, e.do(t, "PUT", c.path+api, c.auth, nil, map[string]any{}), 401, "IotHubUnauthorizedAccess")
		})
	}
	wantHubError(t, e.do(t, "DELETE", "/devices/edge-1"+api, own, nil, nil), 401, "IotHubUnauthorizedAccess")
}

func TestModuleSASAcceptedOnMessagesEvents(t *testing.T) {
	e := start(t)
	r := e.do(t, "PUT", "/devices/edge-1/modules/sensor"+api, e.service(t), nil, map[string]any{})
	mod := r.json(t)["authentication"].(map[string]any)["symmetricKey"].(map[string]any)
	events := "/devices/edge-1/modules/sensor/messages/events?api-version=2020-03-13"
	res := e.c.HubHostname + "/devices/edge-1/modules/sensor"
	for _, k := range []string{mod["primaryKey"].(string), mod["secondaryKey"].(string)} {
		if r := e.do(t, "POST", events, token(t, k, res, time.Hour, ""), nil, `{"t":21}`); r.status != 204 {
			t.Fatalf("module message: %d %s", r.status, r.body)
		}
	}
	if n := e.c.Hub.AcceptedMessages("edge-1", "sensor"); n != 2 {
		t.Errorf("accepted %d messages, want 2", n)
	}
	for name, auth := range map[string]string{
		"wrong key":          token(t, otherKey, res, time.Hour, ""),
		"expired":            token(t, mod["primaryKey"].(string), res, -time.Second, ""),
		"other module":       token(t, mod["primaryKey"].(string), e.c.HubHostname+"/devices/edge-1/modules/other", time.Hour, ""),
		"device token":       token(t, edgeKey, e.c.HubHostname+"/devices/edge-1", time.Hour, ""),
		"service token":      e.service(t),
		"tampered signature": strings.Replace(token(t, mod["primaryKey"].(string), res, time.Hour, ""), "sig=", "sig=A", 1),
	} {
		t.Run(name, func(t *testing.T) {
			wantHubError(t, e.do(t, "POST", events, auth, nil, `{}`), 401, "IotHubUnauthorizedAccess")
		})
	}
	if n := e.c.Hub.AcceptedMessages("edge-1", "sensor"); n != 2 {
		t.Errorf("accepted %d messages after refusals, want 2", n)
	}
	if r := e.do(t, "POST", "/devices/edge-1/messages/events?api-version=2020-03-13", token(t, edgeKey, e.c.HubHostname+"/devices/edge-1", time.Hour, ""), nil, "x"); r.status != 204 || e.c.Hub.AcceptedMessages("edge-1", "") != 1 {
		t.Errorf("device message: %d %s", r.status, r.body)
	}
}

// TestModuleSASCannotReadTheRegistry: a module's own token may send as the
// module but not read its registry entry (which holds its keys) nor any
// other; on IoT Hub that needs a policy with RegistryRead. The service
// policy and the edge device's own token still read it.
func TestModuleSASCannotReadTheRegistry(t *testing.T) {
	e := start(t)
	r := e.do(t, "PUT", "/devices/edge-1/modules/sensor"+api, e.service(t), nil, map[string]any{})
	key := r.json(t)["authentication"].(map[string]any)["symmetricKey"].(map[string]any)["primaryKey"].(string)
	own := token(t, key, e.c.HubHostname+"/devices/edge-1/modules/sensor", time.Hour, "")
	for _, c := range []struct{ method, path string }{
		{"GET", "/devices/edge-1/modules/sensor"}, {"GET", "/devices/edge-1/modules"}, {"GET", "/devices/edge-1"},
		{"PUT", "/devices/edge-1/modules/sensor"}, {"DELETE", "/devices/edge-1/modules/sensor"}, {"GET", "/devices"},
	} {
		if r := e.do(t, c.method, c.path+api, own, map[string]string{"If-Match": "*"}, map[string]any{}); r.status != 401 || strings.Contains(string(r.body), key) {
			t.Errorf("module token %s %s → %d %s, want 401", c.method, c.path, r.status, r.body)
		}
	}
	for name, auth := range map[string]string{"service policy": e.service(t),
		"edge device": token(t, edgeKey, e.c.HubHostname+"/devices/edge-1", time.Hour, "")} {
		if r := e.do(t, "GET", "/devices/edge-1/modules/sensor"+api, auth, nil, nil); r.status != 200 {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
	}
}

func selfSigned(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	key := testpki.NewKey(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	return testpki.TLS(testpki.Sign(t, tmpl, tmpl, key.Public(), key), key)
}

func TestX509DeviceManagesOwnModulesByThumbprint(t *testing.T) {
	cert := selfSigned(t, "x509-edge")
	sum := sha256.Sum256(cert.Leaf.Raw)
	e := start(t, hub.DeviceConfig{DeviceID: "x509-edge", PrimaryThumbprint: hex.EncodeToString(sum[:])})
	cl := e.c.Client(t, &cert)
	if r := do(t, cl, e.c.URL, "PUT", "/devices/x509-edge/modules/m"+api, "", nil, map[string]any{}); r.status != 200 {
		t.Fatalf("x509 device module: %d %s", r.status, r.body)
	}
	wantHubError(t, do(t, cl, e.c.URL, "GET", "/devices/other/modules"+api, "", nil, nil), 401, "IotHubUnauthorizedAccess")
	stranger := selfSigned(t, "x509-edge")
	wantHubError(t, do(t, e.c.Client(t, &stranger), e.c.URL, "GET", "/devices/x509-edge/modules"+api, "", nil, nil), 401, "IotHubUnauthorizedAccess")
}

func TestServiceManagesDevices(t *testing.T) {
	e := start(t)
	svc := e.service(t)
	r := e.do(t, "PUT", "/devices/new-1"+api, svc, nil, map[string]any{"deviceId": "new-1", "authentication": map[string]any{"type": "sas"}})
	if r.status != 200 || r.json(t)["status"] != "enabled" {
		t.Fatalf("create device: %d %s", r.status, r.body)
	}
	wantHubError(t, e.do(t, "PUT", "/devices/new-1"+api, svc, nil, map[string]any{}), 409, "DeviceAlreadyExists")
	if r := e.do(t, "DELETE", "/devices/new-1"+api, svc, map[string]string{"If-Match": "*"}, nil); r.status != 204 {
		t.Errorf("delete: %d %s", r.status, r.body)
	}
	wantHubError(t, e.do(t, "GET", "/devices/new-1"+api, svc, nil, nil), 404, "DeviceNotFound")
	if r := e.do(t, "GET", "/devices/edge-1"+api, token(t, edgeKey, e.c.HubHostname+"/devices/edge-1", time.Hour, ""), nil, nil); r.status != 200 {
		t.Errorf("device reading itself: %d %s", r.status, r.body)
	}
}

// TestRegistryListDevices: GET /devices (Registry.list) answers the
// devices to a service policy, sorted, at most top; a device token gets
// 401 (it may not enumerate the registry).
func TestRegistryListDevices(t *testing.T) {
	e := start(t)
	for _, id := range []string{"zeta", "alpha"} {
		if r := e.do(t, "PUT", "/devices/"+id+api, e.service(t), nil, map[string]any{"deviceId": id}); r.status != 200 {
			t.Fatalf("create %s: %d %s", id, r.status, r.body)
		}
	}
	for _, p := range []string{"/devices", "/devices/"} {
		r := e.do(t, "GET", p+api, e.service(t), nil, nil)
		var list []map[string]any
		if r.status != 200 || json.Unmarshal(r.body, &list) != nil || len(list) < 3 || list[0]["deviceId"] != "alpha" {
			t.Fatalf("GET %s: %d %s", p, r.status, r.body)
		}
	}
	var one []map[string]any
	if r := e.do(t, "GET", "/devices"+api+"&top=1", e.service(t), nil, nil); r.status != 200 || json.Unmarshal(r.body, &one) != nil || len(one) != 1 {
		t.Errorf("top=1: %d %s", r.status, r.body)
	}
	wantHubError(t, e.do(t, "GET", "/devices"+api+"&top=0", e.service(t), nil, nil), 400, "ArgumentInvalid")
	wantHubError(t, e.do(t, "GET", "/devices"+api, token(t, edgeKey, e.c.HubHostname+"/devices/edge-1", time.Hour, ""), nil, nil), 401, "IotHubUnauthorizedAccess")
	wantHubError(t, e.do(t, "POST", "/devices"+api, e.service(t), nil, map[string]any{}), 405, "MethodNotAllowed")
}
