// Package swaggertest checks REST answers against edgelet's swagger files
// (vendored under testdata/edgelet): the conformance tests of the
// management and workload APIs use it.
package swaggertest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi2"
	"github.com/getkin/kin-openapi/openapi2conv"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/oasdiff/yaml"
)

// Spec is one swagger file, converted to OpenAPI 3 for validation.
type Spec struct {
	Name   string
	doc    *openapi3.T
	router routers.Router
	allow  map[string]string // known deviation (the field's JSON pointer) → why
}

// Allow accepts answers whose only disagreement with the file is at the
// JSON pointer (e.g. "/identities/0/authType"), for a reason the caller
// names: where aziot-edged itself answers otherwise than its swagger.
func (s *Spec) Allow(pointer, reason string) {
	if s.allow == nil {
		s.allow = map[string]string{}
	}
	s.allow[pointer] = reason
}

// typos are mistakes in the upstream files, mended at load time so the
// vendored copies stay as published: management 2020-07-07 and later
// declare SystemInfo.provisioning with "type" where a "$ref" is meant.
var typos = [][2]string{
	{"type: '#/definitions/Provisioning'", "$ref: '#/definitions/Provisioning'"},
}

// Load reads testdata/edgelet/<name> (e.g. "managementVersion_2022_08_03.yaml").
func Load(t testing.TB, name string) *Spec {
	t.Helper()
	_, self, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(self), "testdata", "edgelet", name))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range typos {
		b = bytes.ReplaceAll(b, []byte(f[0]), []byte(f[1]))
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var v2 openapi2.T
	if err := json.Unmarshal(j, &v2); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	doc, err := openapi2conv.ToV3(&v2)
	if err != nil {
		t.Fatalf("%s: convert to OpenAPI 3: %v", name, err)
	}
	doc.Servers = openapi3.Servers{{URL: "http://localhost"}}
	// Examples are documentation (2020-07-07's SystemInfo example lacks a
	// required field); the schemas are what is checked.
	if err := doc.Validate(context.Background(), openapi3.DisableExamplesValidation()); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	r, err := legacy.NewRouter(doc, openapi3.DisableExamplesValidation())
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return &Spec{Name: name, doc: doc, router: r}
}

// Has reports whether the file defines method on path (a swagger path
// such as "/modules/{name}/logs", or a concrete one).
func (s *Spec) Has(method, path string) bool {
	req, _ := http.NewRequest(method, "http://localhost"+path, nil)
	_, _, err := s.router.FindRoute(req)
	return err == nil
}

// Check validates an answer to method path?query: the status must be one
// the file lists for the operation (or its default), and a JSON body must
// match the response's schema. Bodies of other types (logs, zip) are
// checked for their content type only.
func (s *Spec) Check(t testing.TB, method, pathAndQuery string, status int, header http.Header, body []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://localhost"+pathAndQuery, nil)
	if err != nil {
		t.Fatal(err)
	}
	route, params, err := s.router.FindRoute(req)
	if err != nil {
		t.Fatalf("%s: %s %s is not in the file: %v", s.Name, method, pathAndQuery, err)
	}
	ct := header.Get("Content-Type")
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true,
			ExcludeResponseBody: !strings.HasPrefix(ct, "application/json")},
	}
	err = openapi3filter.ValidateResponse(context.Background(), in)
	if err == nil {
		return
	}
	var errs []error
	var re *openapi3filter.ResponseError
	var me openapi3.MultiError
	switch {
	case errors.As(err, &re) && errors.As(re.Err, &me):
		errs = me
	case errors.As(err, &me):
		errs = me
	default:
		errs = []error{err}
	}
	for _, e := range errs {
		if !s.allowed(e) {
			t.Errorf("%s: %s %s → %d %s: %v", s.Name, method, pathAndQuery, status, truncate(body), e)
		}
	}
}

// allowed reports whether e is a schema error at an allowed pointer.
func (s *Spec) allowed(e error) bool {
	var se *openapi3.SchemaError
	if !errors.As(e, &se) {
		return false
	}
	ptr := "/" + strings.Join(se.JSONPointer(), "/")
	for p := range s.allow {
		if ptr == p || matchWild(p, ptr) {
			return true
		}
	}
	return false
}

// matchWild matches a pointer whose segments may be "*" (any one segment).
func matchWild(pattern, ptr string) bool {
	ps, qs := strings.Split(pattern, "/"), strings.Split(ptr, "/")
	if len(ps) != len(qs) {
		return false
	}
	for i := range ps {
		if ps[i] != "*" && ps[i] != qs[i] {
			return false
		}
	}
	return true
}

func truncate(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}
