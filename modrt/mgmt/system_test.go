package mgmt

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/modrt/ctrd"
)

func TestListModulesWithATrailingSlash(t *testing.T) {
	e := newEnv(t, asOtherModule, false)
	e.mods.add(ctrd.Status{Name: "m", State: ctrd.StateRunning}, nil)
	for _, p := range []string{"/modules", "/modules/"} {
		var l moduleList
		if err := json.Unmarshal(e.want(e.do("GET", v(p), ""), 200).body, &l); err != nil || len(l.Modules) != 1 || l.Modules[0].Name != "m" {
			t.Errorf("GET %s: %v %+v", p, err, l)
		}
	}
	// Creating through the slash form is agent-only like the plain one.
	e.want(e.do("POST", v("/modules/"), specJSON("n", "alpine")), 403)
}

func TestSystemInfoProvisioningIsAskedEachTime(t *testing.T) {
	e := newEnv(t, asOtherModule, false)
	current := Provisioning{Type: "dps.x509"}
	var fail error
	e.srv.info.CurrentProvisioning = func(context.Context) (Provisioning, error) { return current, fail }
	get := func() provisioningJSON {
		var out struct {
			Provisioning provisioningJSON `json:"provisioning"`
		}
		if err := json.Unmarshal(e.want(e.do("GET", v("/systeminfo"), ""), 200).body, &out); err != nil {
			t.Fatal(err)
		}
		return out.Provisioning
	}
	if p := get(); p.Type != "dps.x509" || p.DynamicReprovisioning {
		t.Errorf("provisioning %+v", p)
	}
	current = Provisioning{Type: "manual.sas", AlwaysReprovisionOnStartup: true}
	if p := get(); p.Type != "manual.sas" || !p.AlwaysReprovisionOnStartup {
		t.Errorf("after reprovisioning: %+v", p)
	}
	// The Identity service down: the static answer, not an error.
	fail = fault.New(fault.Unavailable, "identityd is not running")
	if p := get(); p.Type != "dps" || !p.DynamicReprovisioning {
		t.Errorf("with identityd down: %+v", p)
	}
}

func TestDeleteMissingIdentityIsNotFound(t *testing.T) {
	e := newEnv(t, asAgent, false)
	if r := e.want(e.do("DELETE", v("/identities/ghost"), ""), 404); !strings.Contains(r.message(), "ghost") {
		t.Errorf("message %q", r.message())
	}
}

func TestSupportBundleRoute(t *testing.T) {
	var got BundleOptions
	var fail error
	bundle := func(_ context.Context, o BundleOptions, w io.Writer) error {
		got = o
		if fail != nil {
			return fail
		}
		zw := zip.NewWriter(w)
		f, _ := zw.Create("check.json")
		f.Write([]byte(`{"status":"ok"}`))
		return zw.Close()
	}
	e := newEnv(t, asAgent, false)
	e.want(e.do("GET", "/systeminfo/supportbundle?api-version=2020-07-07", ""), 404) // none set
	e.srv.SetSupportBundle(bundle)
	for _, old := range []string{"2018-06-28", "2019-11-05"} {
		e.want(e.do("GET", "/systeminfo/supportbundle?api-version="+old, ""), 404)
	}
	r := e.want(e.do("GET", "/systeminfo/supportbundle?api-version=2020-07-07&since=1%20day&until=2024-05-01T10:00:00Z&iothub_hostname=hub.example&edge_runtime_only=true", ""), 200)
	if ct := r.header.Get("Content-Type"); ct != "application/zip" {
		t.Errorf("content type %q", ct)
	}
	zr, err := zip.NewReader(bytes.NewReader(r.body), int64(len(r.body)))
	if err != nil || len(zr.File) != 1 || zr.File[0].Name != "check.json" {
		t.Fatalf("zip: %v", err)
	}
	until := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	if !got.Until.Equal(until) || got.Since.IsZero() || time.Since(got.Since) < 23*time.Hour || got.IoTHubHostname != "hub.example" || !got.EdgeRuntimeOnly {
		t.Errorf("options %+v", got)
	}
	for _, q := range []string{"since=yesterday", "until=soon", "edge_runtime_only=maybe"} {
		if r := e.want(e.do("GET", "/systeminfo/supportbundle?api-version="+latest+"&"+q, ""), 400); !strings.Contains(r.message(), "invalid parameter") {
			t.Errorf("%s: %q", q, r.message())
		}
	}
	fail = errors.New("disk full at /var/tmp/secret-path")
	if r := e.want(e.do("GET", v("/systeminfo/supportbundle"), ""), 500); strings.Contains(r.message(), "secret-path") {
		t.Errorf("internal detail in the answer: %q", r.message())
	}
}

// The bundle holds every journal and module log: a module other than
// edgeAgent may not take it, whatever the api-version.
func TestSupportBundleIsAgentOnly(t *testing.T) {
	e := newEnv(t, asOtherModule, false)
	called := false
	e.srv.SetSupportBundle(func(context.Context, BundleOptions, io.Writer) error { called = true; return nil })
	e.want(e.do("GET", v("/systeminfo/supportbundle"), ""), 403)
	if called {
		t.Error("bundle built for a module that is not edgeAgent")
	}
}
