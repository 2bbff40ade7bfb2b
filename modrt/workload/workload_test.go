package workload

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/modrt/ctrd"
	"github.com/edgev2/edgev2/modrt/modspec"
)

// fakeBackend: pid 100 is the module's; Encrypt reverses and tags.
type fakeBackend struct{}

func (fakeBackend) SignAsModule(_ context.Context, module, key string, data []byte) ([]byte, error) {
	return []byte(module + "/" + key + "/" + string(data)), nil
}
func (fakeBackend) TrustBundle(context.Context) (string, error) { return "TRUST", nil }
func (fakeBackend) OwnsPid(_ context.Context, _ string, pid int32) bool {
	return pid == 100
}
func (fakeBackend) ServerCert(_ context.Context, _, cn string, _ time.Time) (string, string, error) {
	if cn == "held" {
		return "", "", fault.New(fault.ReadOnly, "certificate %q is managed by configuration", cn)
	}
	return "", "", fault.New(fault.Unavailable, "no edge CA")
}
func (fakeBackend) IdentityCert(context.Context, string) (string, string, error) {
	return "", "", fault.New(fault.Unavailable, "no edge CA")
}
func (fakeBackend) Encrypt(_ context.Context, module, gen string, pt, iv []byte) ([]byte, error) {
	if gen == "not-mine" {
		return nil, fault.New(fault.NotAuthorized, "generation id %q in the path is not module %s's", gen, module)
	}
	return []byte(module + gen + string(iv) + string(pt)), nil
}
func (fakeBackend) Decrypt(_ context.Context, module, gen string, ct, iv []byte) ([]byte, error) {
	p, ok := strings.CutPrefix(string(ct), module+gen+string(iv))
	if !ok {
		return nil, fault.New(fault.InvalidArgs, "ciphertext does not authenticate")
	}
	return []byte(p), nil
}
func (fakeBackend) ManifestTrustBundle(context.Context) (string, error) { return "", nil }

// fakeModules are the runtime's modules: the sensor (whose socket the
// tests use) and a neighbour whose settings are secret to the sensor.
var fakeModules = map[string]string{
	"sensor":    `{"name":"sensor","type":"docker","config":{"settings":{"image":"sensor:1"},"env":{"MINE":{"value":"sensor-own-env"}}}}`,
	"neighbour": `{"name":"neighbour","type":"docker","config":{"settings":{"image":"secret-image:1"},"env":{"DB_PASSWORD":{"value":"neighbour-secret"}}}}`,
}

func (fakeBackend) Module(_ context.Context, module string) (ctrd.Status, *modspec.Spec, error) {
	j, ok := fakeModules[module]
	if !ok {
		return ctrd.Status{}, nil, fault.New(fault.NotFound, "module %q not found", module)
	}
	spec, err := modspec.ParseSpec([]byte(j))
	if err != nil {
		return ctrd.Status{}, nil, err
	}
	return ctrd.Status{Name: module, Image: spec.Config.Settings.Image, State: ctrd.StateRunning}, spec, nil
}

func serve(h http.Handler, pid int32, method, target, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	r = r.WithContext(context.WithValue(r.Context(), credKey{}, &unix.Ucred{Pid: pid}))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestWorkloadRoutesAnswerAsAziotEdgedDoes(t *testing.T) {
	m := NewManager(t.TempDir(), fakeBackend{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	h := m.handler("sensor")
	const v = "?api-version=2019-01-30"
	cases := []struct {
		name, method, target, body string
		pid                        int32
		status                     int
		want                       string // substring of the body
	}{
		{"sign", "POST", "/modules/sensor/genid/1/sign" + v, `{"keyId":"primary","algo":"HMACSHA256","data":"` + b64("x") + `"}`, 100, 200, b64("sensor/primary/x")},
		{"sign as another module", "POST", "/modules/other/genid/1/sign" + v, `{"keyId":"primary","algo":"HMACSHA256","data":""}`, 100, 403, "may not act as module other"},
		{"sign from a process not the module's", "POST", "/modules/sensor/genid/1/sign" + v, `{}`, 7, 403, "not a process of module sensor"},
		{"sign without api-version", "POST", "/modules/sensor/genid/1/sign", `{}`, 100, 400, "api-version"},
		{"sign with a bad algorithm", "POST", "/modules/sensor/genid/1/sign" + v, `{"keyId":"primary","algo":"MD5","data":""}`, 100, 400, "HMACSHA256"},
		{"sign with bad JSON", "POST", "/modules/sensor/genid/1/sign" + v, `{"keyId":`, 100, 400, "not valid JSON"},
		{"sign with a body over 1 MiB", "POST", "/modules/sensor/genid/1/sign" + v, strings.Repeat(" ", 1<<20+1), 100, 413, "over"},
		{"encrypt", "POST", "/modules/sensor/genid/g1/encrypt" + v, `{"plaintext":"` + b64("p") + `","initializationVector":"` + b64("iv") + `"}`, 100, 200, `"ciphertext":"` + b64("sensorg1ivp") + `"`},
		{"decrypt", "POST", "/modules/sensor/genid/g1/decrypt" + v, `{"ciphertext":"` + b64("sensorg1ivp") + `","initializationVector":"` + b64("iv") + `"}`, 100, 200, `"plaintext":"` + b64("p") + `"`},
		{"decrypt under another generation", "POST", "/modules/sensor/genid/g2/decrypt" + v, `{"ciphertext":"` + b64("sensorg1ivp") + `","initializationVector":"` + b64("iv") + `"}`, 100, 400, "authenticate"},
		{"encrypt under a generation not the module's", "POST", "/modules/sensor/genid/not-mine/encrypt" + v, `{"plaintext":"` + b64("p") + `","initializationVector":"` + b64("iv") + `"}`, 100, 403, "not module sensor's"},
		{"encrypt without an iv", "POST", "/modules/sensor/genid/g1/encrypt" + v, `{"plaintext":"` + b64("p") + `"}`, 100, 400, "initializationVector"},
		{"encrypt with an empty iv", "POST", "/modules/sensor/genid/g1/encrypt" + v, `{"plaintext":"","initializationVector":""}`, 100, 400, "empty"},
		{"decrypt of non-base64", "POST", "/modules/sensor/genid/g1/decrypt" + v, `{"ciphertext":"%%%","initializationVector":"` + b64("iv") + `"}`, 100, 400, "base64"},
		{"decrypt as another module", "POST", "/modules/other/genid/g1/decrypt" + v, `{}`, 100, 403, "may not act"},
		{"identity certificate without an edge CA", "POST", "/modules/sensor/certificate/identity" + v, `{}`, 100, 503, "no edge CA"},
		{"identity certificate of another module", "POST", "/modules/other/certificate/identity" + v, `{}`, 100, 403, "may not act"},
		{"server certificate with a bad name", "POST", "/modules/sensor/genid/1/certificate/server" + v, `{"commonName":"a b","expiration":"2099-01-01T00:00:00Z"}`, 100, 400, "not a host name"},
		{"server certificate for a name with '_' reaches the backend", "POST", "/modules/sensor/genid/1/certificate/server" + v, `{"commonName":"my_module","expiration":"2099-01-01T00:00:00Z"}`, 100, 503, "no edge CA"},
		{"server certificate for an IP address reaches the backend", "POST", "/modules/sensor/genid/1/certificate/server" + v, `{"commonName":"fd00::5","expiration":"2099-01-01T00:00:00Z"}`, 100, 503, "no edge CA"},
		{"server certificate for a wildcard", "POST", "/modules/sensor/genid/1/certificate/server" + v, `{"commonName":"*.plant.example","expiration":"2099-01-01T00:00:00Z"}`, 100, 400, "not a host name"},
		{"server certificate expiring in the past", "POST", "/modules/sensor/genid/1/certificate/server" + v, `{"commonName":"sensor","expiration":"2001-01-01T00:00:00Z"}`, 100, 400, "future"},
		{"server certificate whose id configuration holds", "POST", "/modules/sensor/genid/1/certificate/server" + v, `{"commonName":"held","expiration":"2099-01-01T00:00:00Z"}`, 100, 409, "managed by configuration"},
		{"trust bundle", "GET", "/trust-bundle" + v, "", 100, 200, `"certificate":"TRUST"`},
		{"manifest trust bundle, none configured", "GET", "/manifest-trust-bundle" + v, "", 100, 200, `"certificate":""`},
		{"unknown route", "GET", "/nope" + v, "", 100, 404, "no workload API route"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := serve(h, c.pid, c.method, c.target, c.body)
			if w.Code != c.status || !strings.Contains(w.Body.String(), c.want) {
				t.Fatalf("%s %s → %d %s; want %d with %q", c.method, c.target, w.Code, w.Body, c.status, c.want)
			}
			if w.Code >= 400 {
				var e struct{ Message string }
				if json.Unmarshal(w.Body.Bytes(), &e) != nil || e.Message == "" {
					t.Fatalf("error body %s is not {\"message\": ...}", w.Body)
				}
			}
		})
	}
}

// FuzzWorkloadBodies: no request body makes a handler panic or answer
// anything but JSON.
func FuzzWorkloadBodies(f *testing.F) {
	for _, s := range []string{`{"keyId":"primary","algo":"HMACSHA256","data":"eA=="}`, `{"plaintext":"cA==","initializationVector":"aXY="}`,
		`{"commonName":"x","expiration":"2099-01-01T00:00:00Z"}`, `{`, `null`, `[]`, `{"plaintext":null}`} {
		f.Add(s)
	}
	m := NewManager(f.TempDir(), fakeBackend{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	h := m.handler("sensor")
	f.Fuzz(func(t *testing.T, body string) {
		for _, target := range []string{"/modules/sensor/genid/1/sign", "/modules/sensor/genid/1/encrypt", "/modules/sensor/genid/1/decrypt",
			"/modules/sensor/genid/1/certificate/server", "/modules/sensor/certificate/identity"} {
			w := serve(h, 100, "POST", target+"?api-version=2019-01-30", body)
			if !json.Valid(w.Body.Bytes()) {
				t.Fatalf("%s answered %d with non-JSON %q", target, w.Code, w.Body)
			}
		}
	})
}

// TestWorkloadModuleListShowsOnlyTheCaller: GET /modules (and /modules/,
// which aziot-edged serves too) answers a ModuleList in every api-version,
// holding the caller's own module only: a module learns nothing of its
// neighbours (their settings, env, even their names), whatever path or
// query it sends.
func TestWorkloadModuleListShowsOnlyTheCaller(t *testing.T) {
	m := NewManager(t.TempDir(), fakeBackend{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	h := m.handler("sensor")
	for v := range APIVersions {
		for _, p := range []string{"/modules", "/modules/", "/modules?name=neighbour&api-version=" + v, "/modules/?all=true"} {
			target := p
			if !strings.Contains(p, "api-version") {
				target += map[bool]string{true: "&", false: "?"}[strings.Contains(p, "?")] + "api-version=" + v
			}
			w := serve(h, 100, "GET", target, "")
			var list struct {
				Modules []struct {
					Name   string
					Config struct{ Env []struct{ Key, Value string } }
					Status struct{ RuntimeStatus struct{ Status string } }
				}
			}
			if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &list) != nil || len(list.Modules) != 1 || list.Modules[0].Name != "sensor" ||
				list.Modules[0].Status.RuntimeStatus.Status != "running" || len(list.Modules[0].Config.Env) != 1 {
				t.Fatalf("GET %s → %d %s", target, w.Code, w.Body)
			}
			if strings.Contains(w.Body.String(), "neighbour") || strings.Contains(w.Body.String(), "secret") {
				t.Fatalf("GET %s shows another module: %s", target, w.Body)
			}
		}
	}
	for _, c := range []struct {
		name, target string
		pid          int32
		status       int
	}{
		{"a process not the module's", "/modules?api-version=2019-01-30", 7, 403},
		{"no api-version", "/modules", 100, 400},
		{"an unknown api-version", "/modules?api-version=2099-01-01", 100, 400},
		{"another module by path", "/modules/neighbour?api-version=2019-01-30", 100, 404},
	} {
		if w := serve(h, c.pid, "GET", c.target, ""); w.Code != c.status || strings.Contains(w.Body.String(), "secret") {
			t.Errorf("%s: GET %s → %d %s, want %d", c.name, c.target, w.Code, w.Body, c.status)
		}
	}
	// A module the runtime no longer has lists nothing.
	gone := m.handler("removed")
	if w := serve(gone, 100, "GET", "/modules?api-version=2019-01-30", ""); w.Code != 200 || strings.TrimSpace(w.Body.String()) != `{"modules":[]}` {
		t.Errorf("removed module: %d %s", w.Code, w.Body)
	}
}
