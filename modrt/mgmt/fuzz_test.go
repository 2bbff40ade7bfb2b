package mgmt

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzRequestBodies drives the body and query parsers with outside input:
// they must not panic, must answer 4xx (never 5xx) for what they refuse,
// and what they accept must convert back to the wire shape.
func FuzzRequestBodies(f *testing.F) {
	for _, seed := range []string{
		specJSON("m", "alpine"),
		`{"name":"m","type":"docker","config":{"settings":{"image":"a","createOptions01":"{}"},"env":[{"key":"A","value":1}]}}`,
		`{"moduleId":"edgeHub","managedBy":"iotedge"}`,
		`{"generationId":"1"}`,
		`null`, `[]`, `{`, `"x"`, `{"name":"m"} {}`,
		"follow=true&tail=5&since=1d&until=2024-01-01T00:00:00Z&timestamps=1",
		"since=2 days 3 hours&tail=all",
	} {
		f.Add(seed)
	}
	mods, ids := newFakeModules(), newFakeIdentities()
	srv := NewServer(mods, ids, SystemInfo{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	h := srv.Handler()
	root := context.WithValue(context.Background(), peerKey{}, Peer{Pid: 1, Uid: 0})
	f.Fuzz(func(t *testing.T, in string) {
		if len(in) > 16<<10 {
			return // size caps are tested directly; big inputs only slow minimizing
		}
		if spec, err := parseModuleSpec([]byte(in)); err == nil {
			if err := moduleName(spec.Name); err != nil {
				t.Fatalf("accepted spec with bad name %q", spec.Name)
			}
			d, err := specDetailsJSON(spec, moduleStatus{RuntimeStatus: runtimeStatus{Status: statusStopped}})
			if err != nil {
				t.Fatalf("accepted spec does not convert: %v", err)
			}
			if _, err := json.Marshal(d); err != nil {
				t.Fatal(err)
			}
		} else if s := statusOf(err); s < 400 || s >= 500 {
			t.Fatalf("spec refused with %d: %v", s, err)
		}
		if spec, err := parseIdentitySpec([]byte(in)); err == nil && spec.ModuleID == "" {
			t.Fatal("identity without moduleId accepted")
		}
		var upd struct {
			GenerationID string `json:"generationId"`
			ManagedBy    string `json:"managedBy"`
		}
		if err := decodeJSON([]byte(in), &upd); err != nil && statusOf(err) != http.StatusBadRequest {
			t.Fatalf("decode refused with %d", statusOf(err))
		}
		if q, err := url.ParseQuery(in); err == nil {
			if o, err := parseLogOptions(q, time.Now()); err == nil && o.Tail < -1 {
				t.Fatalf("tail %d", o.Tail)
			}
		}
		for _, rq := range [][2]string{{"POST", "/modules"}, {"POST", "/identities"}, {"PUT", "/identities/x"}, {"POST", "/modules/m/prepareupdate"}} {
			req := httptest.NewRequestWithContext(root, rq[0], rq[1]+"?api-version=2022-08-03", strings.NewReader(in))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code >= 500 {
				t.Fatalf("%s %s: %d %s", rq[0], rq[1], rec.Code, rec.Body)
			}
		}
		mods.mu.Lock()
		clear(mods.mods)
		mods.mu.Unlock()
		ids.mu.Lock()
		clear(ids.ids)
		ids.mu.Unlock()
	})
}
