package mgmt

import (
	"archive/zip"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/edgev2/edgev2/internal/swaggertest"
)

// swaggerFile is the edgelet swagger file that describes api-version v:
// each accepted version has its own.
func swaggerFile(v string) string {
	return "managementVersion_" + strings.ReplaceAll(v, "-", "_") + ".yaml"
}

// TestEveryRouteConformsToEdgeletSwagger calls every management route in
// every accepted api-version and validates the status and the body
// against edgelet's swagger file for that version (kin-openapi, from the
// vendored YAML). A route newer than the version must be 404 and absent
// from that version's file.
func TestEveryRouteConformsToEdgeletSwagger(t *testing.T) {
	calls := []struct {
		method, path, body string
		status             int
		since              string
	}{
		{"GET", "/modules", "", 200, oldest},
		{"POST", "/modules", specJSON("m", "alpine"), 201, oldest},
		{"POST", "/modules", specJSON("m", "alpine"), 409, oldest},
		{"GET", "/modules/m", "", 200, oldest},
		{"GET", "/modules/nothere", "", 404, oldest},
		{"PUT", "/modules/m", specJSON("m", "alpine:2"), 200, oldest},
		{"PUT", "/modules/nothere", specJSON("nothere", "alpine"), 404, oldest},
		{"POST", "/modules/m/prepareupdate", specJSON("m", "alpine:3"), 204, "2019-01-30"},
		{"POST", "/modules/m/start", "", 204, oldest},
		{"POST", "/modules/m/stop", "", 204, oldest},
		{"POST", "/modules/m/restart", "", 204, oldest},
		{"POST", "/modules/nothere/start", "", 404, oldest},
		{"GET", "/modules/m/logs", "", 200, oldest},
		{"GET", "/modules", "", 200, oldest},
		{"DELETE", "/modules/m", "", 204, oldest},
		{"DELETE", "/modules/m", "", 404, oldest},
		{"GET", "/identities", "", 200, oldest},
		{"POST", "/identities", `{"moduleId":"mod1","managedBy":"iotedge"}`, 200, oldest},
		{"GET", "/identities", "", 200, oldest},
		{"PUT", "/identities/mod1", `{"managedBy":"iotedge"}`, 200, oldest},
		{"DELETE", "/identities/mod1", "", 204, oldest},
		{"DELETE", "/identities/mod1", "", 404, oldest},
		{"GET", "/systeminfo", "", 200, oldest},
		{"GET", "/systeminfo/resources", "", 200, "2019-11-05"},
		{"POST", "/device/reprovision", "", 200, "2019-10-22"},
		{"GET", "/systeminfo/supportbundle", "", 200, "2020-07-07"},
	}
	for _, v := range APIVersions {
		t.Run(v, func(t *testing.T) {
			spec := swaggertest.Load(t, swaggerFile(v))
			// aziot-edged sends "sas" (edgelet-http-mgmt identity/mod.rs),
			// not the file's "Sas"; edgeAgent reads either.
			const sas = "authType is \"sas\" as aziot-edged sends it"
			spec.Allow("/authType", sas)
			spec.Allow("/identities/*/authType", sas)
			// 2021-12-07 and 2022-08-03 no longer declare total_memory and
			// type other properties as strings; aziot-edged still sends
			// the integer (edgelet-core SystemInfo.total_memory: u64).
			spec.Allow("/total_memory", "total_memory is an integer as aziot-edged sends it")
			e := newEnv(t, asAgent, false)
			e.mods.logData = frame(1, "hello\n")
			e.srv.SetSupportBundle(func(_ context.Context, _ BundleOptions, w io.Writer) error { return zip.NewWriter(w).Close() })
			for _, c := range calls {
				target := c.path + "?api-version=" + v
				r := e.do(c.method, target, c.body)
				if v < c.since {
					if r.status != http.StatusNotFound || spec.Has(c.method, c.path) {
						t.Errorf("%s %s: %d (in the file: %v); a route newer than the version is 404 and not in its file",
							c.method, target, r.status, spec.Has(c.method, c.path))
					}
					continue
				}
				if r.status != c.status {
					t.Errorf("%s %s → %d %s, want %d", c.method, target, r.status, r.body, c.status)
					continue
				}
				spec.Check(t, c.method, target, r.status, r.header, r.body)
			}
		})
	}
}
