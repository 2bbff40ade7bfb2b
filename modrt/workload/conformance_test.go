package workload

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"math/big"
	"slices"
	"testing"
	"time"

	"github.com/edgev2/edgev2/internal/swaggertest"
	"github.com/edgev2/edgev2/internal/testpki"
)

// certBackend issues a real (self-signed) certificate, so the 201 answers
// of the certificate routes can be checked.
type certBackend struct {
	fakeBackend
	chain, key string
}

func (b certBackend) ServerCert(context.Context, string, string, time.Time) (string, string, error) {
	return b.chain, b.key, nil
}
func (b certBackend) IdentityCert(context.Context, string) (string, string, error) {
	return b.chain, b.key, nil
}

func selfSigned(t *testing.T) (string, string) {
	k := testpki.NewKey(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sensor"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	return string(testpki.PEM(testpki.Sign(t, tmpl, tmpl, k.Public(), k))), string(testpki.PKCS8PEM(t, k))
}

// workloadSwaggerFile is the edgelet file that describes api-version v:
// the newest one not newer than it.
func workloadSwaggerFile(v string) string {
	file := "2018_06_28"
	for _, f := range []string{"2019-01-30", "2020-07-07"} {
		if v >= f {
			file = f
		}
	}
	if file != "2018_06_28" {
		file = file[:4] + "_" + file[5:7] + "_" + file[8:]
	}
	return "workloadVersion_" + file + ".yaml"
}

// TestEveryWorkloadRouteConformsToEdgeletSwagger calls every workload
// route in every accepted api-version and validates status and body
// against edgelet's swagger file for that version (kin-openapi). Routes
// aziot-edged serves in versions whose file lacks them
// (/manifest-trust-bundle before 2020-07-07) are checked against the
// newest file.
func TestEveryWorkloadRouteConformsToEdgeletSwagger(t *testing.T) {
	chain, key := selfSigned(t)
	m := NewManager(t.TempDir(), certBackend{chain: chain, key: key}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	h := m.handler("sensor")
	newest := swaggertest.Load(t, "workloadVersion_2020_07_07.yaml")
	calls := []struct {
		method, path, body string
		status             int
	}{
		{"GET", "/modules", "", 200},
		{"POST", "/modules/sensor/genid/g1/sign", `{"keyId":"primary","algo":"HMACSHA256","data":"` + b64("x") + `"}`, 200},
		{"POST", "/modules/sensor/genid/g1/encrypt", `{"plaintext":"` + b64("p") + `","initializationVector":"` + b64("iv") + `"}`, 200},
		{"POST", "/modules/sensor/genid/g1/decrypt", `{"ciphertext":"` + b64("sensorg1ivp") + `","initializationVector":"` + b64("iv") + `"}`, 200},
		{"POST", "/modules/sensor/certificate/identity", `{}`, 201},
		{"POST", "/modules/sensor/genid/g1/certificate/server", `{"commonName":"sensor","expiration":"` + time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + `"}`, 201},
		{"GET", "/trust-bundle", "", 200},
		{"GET", "/manifest-trust-bundle", "", 200},
	}
	versions := make([]string, 0, len(APIVersions))
	for v := range APIVersions {
		versions = append(versions, v)
	}
	slices.Sort(versions)
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			spec := swaggertest.Load(t, workloadSwaggerFile(v))
			for _, c := range calls {
				target := c.path + "?api-version=" + v
				w := serve(h, 100, c.method, target, c.body)
				if w.Code != c.status {
					t.Errorf("%s %s → %d %s, want %d", c.method, target, w.Code, w.Body, c.status)
					continue
				}
				s := spec
				if !spec.Has(c.method, c.path) {
					s = newest
				}
				s.Check(t, c.method, target, w.Code, w.Result().Header, w.Body.Bytes())
			}
		})
	}
}
