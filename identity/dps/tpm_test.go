package dps

import (
	"context"
	"encoding/base64"
	"reflect"
	"strings"
	"testing"

	"github.com/edgev2/edgev2/fault"
)

// tpmConfig is a TPM registration against f whose "TPM" records imports.
func tpmConfig(t *testing.T, f *fakeDPS, s *sleepRecorder, imported *[]string) Config {
	cfg := symmetricConfig(t, f, s)
	cfg.TPM = &TPM{EndorsementKey: []byte("ek-2b"), StorageRootKey: []byte("srk-2b"), Import: func(_ context.Context, blob []byte) error {
		*imported = append(*imported, string(blob))
		return nil
	}}
	return cfg
}

func TestRegisterTPMChallengeImportSignAndReimport(t *testing.T) {
	k1, k2 := base64.StdEncoding.EncodeToString([]byte("blob-1")), base64.StdEncoding.EncodeToString([]byte("blob-2"))
	assignedTPM := strings.Replace(assigned, `"payload"`, `"tpm":{"authenticationKey":"`+k2+`"},"payload"`, 1)
	f := newFakeDPS(t, nil,
		reply{Status: 401, Body: `{"authenticationKey":"` + k1 + `"}`},
		reply{Status: 202, Body: assigning},
		reply{Status: 200, Body: assignedTPM})
	var s sleepRecorder
	var imported []string
	res, err := Register(context.Background(), tpmConfig(t, f, &s, &imported))
	if err != nil {
		t.Fatal(err)
	}
	if res.DeviceID != "dev-1" {
		t.Fatalf("result %+v", res)
	}
	if !reflect.DeepEqual(imported, []string{"blob-1", "blob-2"}) {
		t.Fatalf("imports %q; want the challenge's key, then registrationState.tpm's", imported)
	}
	reqs := f.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want challenge, register, poll", len(reqs))
	}
	want := `{"registrationId":"dev-1","tpm":{"endorsementKey":"` + base64.StdEncoding.EncodeToString([]byte("ek-2b")) +
		`","storageRootKey":"` + base64.StdEncoding.EncodeToString([]byte("srk-2b")) + `"}}`
	for i, r := range reqs[:2] {
		if r.Method != "PUT" || string(r.Body) != want {
			t.Fatalf("request %d: %s body %s; want PUT %s", i, r.Method, r.Body, want)
		}
	}
	if a := reqs[0].Header.Get("Authorization"); a != "" {
		t.Fatalf("the challenge carries Authorization %q", a)
	}
	for _, r := range reqs[1:] {
		checkDPSToken(t, r.Header.Get("Authorization"))
	}
}

func TestRegisterTPMRefusalsSayWhy(t *testing.T) {
	for _, tc := range []struct {
		name string
		rep  reply
		kind fault.Kind
		want string
	}{
		{"enrollment not found", reply{Status: 404, Body: `{"errorCode":404201,"message":"Enrollment not found"}`}, fault.NotFound, "Enrollment not found"},
		{"401 without a key", reply{Status: 401, Body: `{"errorCode":401002,"message":"the endorsement key is not the one enrolled"}`}, fault.NotAuthorized, "not the one enrolled"},
		{"401 with a non-base64 key", reply{Status: 401, Body: `{"authenticationKey":"%%%"}`}, fault.NotAuthorized, "refused TPM registration"},
		{"accepted without authentication", reply{Status: 200, Body: assigned}, fault.Failed, "without authentication"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeDPS(t, nil, tc.rep)
			var s sleepRecorder
			var imported []string
			_, err := Register(context.Background(), tpmConfig(t, f, &s, &imported))
			if !fault.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v (kind %v); want %v saying %q", err, fault.KindOf(err), tc.kind, tc.want)
			}
			if len(imported) != 0 {
				t.Fatalf("imported %q after a refusal", imported)
			}
		})
	}
}

func TestParseAuthenticationKeyTable(t *testing.T) {
	for _, tc := range []struct {
		body, want string // want "" = ok
	}{
		{`{"authenticationKey":"AAEC"}`, ""},
		{` {"authenticationKey":"AAEC"} `, ""},
		{`{"authenticationKey":""}`, "missing or empty"},
		{`{}`, "missing or empty"},
		{`{"authenticationKey":"AAEC"}{}`, "data after"},
		{`{"authenticationKey":7}`, "not a JSON object"},
		{`{"authenticationKey":"A"}`, "not base64"},
		{`{"authenticationKey":"` + strings.Repeat("A", 13000) + `"}`, "at most"},
		{`[]`, "not a JSON object"},
	} {
		_, err := ParseAuthenticationKey([]byte(tc.body))
		if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%.40s: %v; want %q", tc.body, err, tc.want)
		}
	}
}

func FuzzParseAuthenticationKey(f *testing.F) {
	f.Add([]byte(`{"authenticationKey":"AAEC"}`))
	f.Add([]byte(`{"authenticationKey":""}`))
	f.Add([]byte(`{"errorCode":401002}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		b, err := ParseAuthenticationKey(body)
		if err == nil && len(b) == 0 {
			t.Fatal("accepted an empty key")
		}
	})
}
