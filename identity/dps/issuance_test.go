package dps

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/testpki"
)

// issueFor signs a leaf for pub under ca.
func issueFor(t *testing.T, ca *testCA, cn string, pub any) *x509.Certificate {
	return ca.Issue(t, cn, pub, &x509.Certificate{NotBefore: fixedNow.Add(-time.Hour), NotAfter: fixedNow.Add(time.Hour)})
}

func assignedWith(t *testing.T, state map[string]any) string {
	st := map[string]any{"registrationId": "dev-1", "assignedHub": "hub.example", "deviceId": "dev-1", "status": "assigned"}
	for k, v := range state {
		st[k] = v
	}
	b, _ := json.Marshal(map[string]any{"operationId": "op", "status": "assigned", "registrationState": st})
	return string(b)
}

func b64(c *x509.Certificate) string { return base64.StdEncoding.EncodeToString(c.Raw) }

func TestRegisterWithCSR(t *testing.T) {
	ca := newCA(t, "issuing")
	key, other := testpki.NewKey(t), testpki.NewKey(t)
	csr := testpki.CSR(t, key, "dev-1")
	leaf := issueFor(t, ca, "dev-1", key.Public())
	wrong := issueFor(t, ca, "dev-1", other.Public())
	stranger := issueFor(t, newCA(t, "stranger"), "dev-1", key.Public())
	bundle := []map[string]any{{"certificate": string(ca.PEM())}}
	tests := []struct {
		name    string
		state   map[string]any
		wantErr error
	}{
		{"chain and trust bundle", map[string]any{"issuedCertificateChain": []string{b64(leaf), b64(ca.Cert)}, "trustBundle": map[string]any{"certificates": bundle}}, nil},
		{"2021-11-01-preview PEM string", map[string]any{"issuedClientCertificate": string(testpki.PEM(leaf))}, nil},
		{"certificate for another key", map[string]any{"issuedCertificateChain": []string{b64(wrong), b64(ca.Cert)}}, ErrWrongKey},
		{"chain that does not hold together", map[string]any{"issuedCertificateChain": []string{b64(stranger), b64(ca.Cert)}}, ErrWrongKey},
		{"not base64", map[string]any{"issuedCertificateChain": []string{"%%%"}}, ErrWrongKey},
		{"nothing issued", nil, ErrNotIssued},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeDPS(t, nil, reply{Status: 200, Body: assignedWith(t, tc.state)})
			var s sleepRecorder
			cfg := symmetricConfig(t, f, &s)
			cfg.CSR = csr
			res, err := Register(context.Background(), cfg)
			req := f.Requests()[0]
			if !strings.Contains(req.Query, "api-version="+APIVersionCSR) {
				t.Errorf("query %q, want api-version %s", req.Query, APIVersionCSR)
			}
			var body map[string]string
			json.Unmarshal(req.Body, &body)
			if body["csr"] != base64.StdEncoding.EncodeToString(csr) {
				t.Errorf("csr field %q, want base64 DER without armor", body["csr"])
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || res != nil {
					t.Fatalf("got %v, %v; want %v", res, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !res.IssuedChain[0].Equal(leaf) {
				t.Fatalf("issued chain %v", res.IssuedChain)
			}
			if tc.name == "chain and trust bundle" && (len(res.TrustBundle) != 1 || !res.TrustBundle[0].Equal(ca.Cert)) {
				t.Fatalf("trust bundle %v", res.TrustBundle)
			}
		})
	}
}

func TestRegisterWithCSRNamedRefusals(t *testing.T) {
	csr := testpki.CSR(t, testpki.NewKey(t), "dev-1")
	for _, tc := range []struct {
		name, body string
		want       error
	}{
		{"api-version unsupported", `{"errorCode":400001,"trackingId":"x","message":"api-version is not supported"}`, ErrAPIVersion},
		{"csr refused", `{"errorCode":400012,"trackingId":"x","message":"the certificate signing request's subject is not CN=dev-1"}`, ErrCSRRefused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeDPS(t, nil, reply{Status: 400, Body: tc.body})
			var s sleepRecorder
			cfg := symmetricConfig(t, f, &s)
			cfg.CSR = csr
			_, err := Register(context.Background(), cfg)
			if !errors.Is(err, tc.want) || !fault.Is(err, fault.InvalidArgs) || !strings.Contains(err.Error(), "fix:") {
				t.Fatalf("got %v, want %v with a fix", err, tc.want)
			}
		})
	}
}

// FuzzParseIssued feeds DPS's certificate fields through the parsers: no
// panic, and nothing is returned with an error.
func FuzzParseIssued(f *testing.F) {
	cert := testpki.NewCA(f, "fuzz", func(c *x509.Certificate) { c.NotBefore, c.NotAfter = fixedNow, fixedNow.Add(time.Hour) }).Cert
	f.Add(b64(cert), string(testpki.PEM(cert)))
	f.Add("%%%", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
	f.Fuzz(func(t *testing.T, chainElem, text string) {
		out, err := decodeIssued(&RegistrationState{IssuedCertificateChain: []string{chainElem}, IssuedClientCertificate: text})
		if err != nil && out != nil {
			t.Fatal("certificates returned with an error")
		}
		out, err = parseCertText(text)
		if err != nil && out != nil {
			t.Fatal("certificates returned with an error")
		}
	})
}
