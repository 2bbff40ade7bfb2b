package dps

import (
	"strings"
	"testing"
)

func TestParseRegistrationTable(t *testing.T) {
	for _, c := range []struct {
		body    string
		ok      bool
		payload string
	}{
		{`{"registrationId":"dev-1"}`, true, ""},
		{`{"registrationId":"DEV-1"}`, true, ""},
		{`{"registrationId":"dev-1","payload":{"a":1}}`, true, `{"a":1}`},
		{`{"registrationId":"dev-1","payload":null}`, true, ""},
		{`{"registrationId":"dev-2"}`, false, ""},
		{`{"registrationId":"dev-1","tpm":{"endorsementKey":"x"}}`, false, ""},
		{`[]`, false, ""},
		{``, false, ""},
	} {
		in, e := parseRegistration([]byte(c.body), "dev-1")
		if (e == nil) != c.ok || string(in.Payload) != c.payload {
			t.Errorf("%s: err %v payload %q, want ok=%v payload %q", c.body, e, in.Payload, c.ok, c.payload)
		}
	}
}

func TestValidRegistrationID(t *testing.T) {
	for id, want := range map[string]bool{"dev-1": true, "a": true, "Dev.1_x:y": true, "-dev": false, "dev-": false, "": false, "a/b": false, strings.Repeat("a", 129): false} {
		if ValidRegistrationID(id) != want {
			t.Errorf("ValidRegistrationID(%q) = %v", id, !want)
		}
	}
}

func FuzzParseRegistration(f *testing.F) {
	f.Add([]byte(`{"registrationId":"dev-1","payload":{"a":[1,2]}}`), "dev-1")
	f.Add([]byte(`{"registrationId":"x","tpm":null}`), "x")
	f.Add([]byte(`{"registrationId":"x","tpm":{"endorsementKey":"AAEC","storageRootKey":"AAEC"}}`), "x")
	f.Add([]byte(`{"registrationId":"x","csr":"MIIB"}`), "x")
	f.Add([]byte(`{"registrationId":"x","clientCertificateCsr":"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"}`), "x")
	f.Fuzz(func(t *testing.T, body []byte, id string) {
		in, e := parseRegistration(body, id)
		if e == nil && !strings.EqualFold(in.RegistrationID, id) {
			t.Fatalf("accepted %q for %q", in.RegistrationID, id)
		}
		if e == nil {
			// A CSR that parses has a signature that verifies with its own key.
			if req, ce := parseCSR(in, APIVersionCSR); ce == nil && req != nil && req.csr.CheckSignature() != nil {
				t.Fatal("accepted a CSR whose signature does not verify")
			}
		}
	})
}
