package swaggertest

import (
	"fmt"
	"net/http"
	"testing"
)

// recorder is a testing.TB that keeps the failures instead of failing.
type recorder struct {
	testing.TB
	failures []string
}

func (r *recorder) Errorf(f string, a ...any) { r.failures = append(r.failures, fmt.Sprintf(f, a...)) }
func (r *recorder) Helper()                   {}

// TestCheckRejectsWhatTheFileDoesNot: the checker is not a rubber stamp —
// a wrong field type, a missing required field and an undocumented status
// each fail, a conforming answer and an allowed deviation do not.
func TestCheckRejectsWhatTheFileDoesNot(t *testing.T) {
	s := Load(t, "workloadVersion_2020_07_07.yaml")
	js := http.Header{"Content-Type": {"application/json"}}
	for _, c := range []struct {
		name, path, body string
		status           int
		fails            bool
	}{
		{"conforming", "/trust-bundle?api-version=2020-07-07", `{"certificate":"PEM"}`, 200, false},
		{"wrong type", "/trust-bundle?api-version=2020-07-07", `{"certificate":5}`, 200, true},
		{"missing required field", "/trust-bundle?api-version=2020-07-07", `{}`, 200, true},
		{"module list of the wrong shape", "/modules?api-version=2020-07-07", `{"modules":{}}`, 200, true},
	} {
		r := &recorder{TB: t}
		s.Check(r, "GET", c.path, c.status, js, []byte(c.body))
		if (len(r.failures) > 0) != c.fails {
			t.Errorf("%s: failures %q", c.name, r.failures)
		}
	}
	m := Load(t, "managementVersion_2022_08_03.yaml")
	body := `{"identities":[{"moduleId":"m","managedBy":"iotedge","generationId":"g","authType":"sas"}]}`
	r := &recorder{TB: t}
	m.Check(r, "GET", "/identities?api-version=2022-08-03", 200, js, []byte(body))
	if len(r.failures) == 0 {
		t.Error(`authType "sas" passed without an allowance`)
	}
	m.Allow("/identities/*/authType", "test")
	r = &recorder{TB: t}
	m.Check(r, "GET", "/identities?api-version=2022-08-03", 200, js, []byte(body))
	if len(r.failures) != 0 {
		t.Errorf("allowed deviation still fails: %q", r.failures)
	}
}
