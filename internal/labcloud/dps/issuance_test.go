package dps_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgev2/edgev2/internal/labcloud/dps"
	"github.com/edgev2/edgev2/internal/labcloud/hub"
	"github.com/edgev2/edgev2/internal/testpki"
)

// csrFor is a DER CSR for cn signed by key.
var csrFor = testpki.CSR

// registerWithCSR registers regID with a SAS token and the CSR field
// field (csr or clientCertificateCsr), polls to the end and returns the
// last response.
func registerWithCSR(t *testing.T, e *env, key, regID, apiVersion, field, csrText string) resp {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"registrationId": regID, field: csrText})
	base := e.c.URL + "/" + scope + "/registrations/" + regID
	tok := sasToken(t, key, regID, time.Hour, "upper")
	r := call(t, e.cl, http.MethodPut, base+"/register?api-version="+apiVersion, tok, string(body))
	for i := 0; r.status == http.StatusAccepted && i < 10; i++ {
		opID, _ := r.m["operationId"].(string)
		r = call(t, e.cl, http.MethodGet, base+"/operations/"+opID+"?api-version="+apiVersion, tok, "")
	}
	return r
}

func issuanceCloud(t *testing.T, keyTypes ...string) *env {
	return start(t, dps.Config{Enrollments: []dps.Enrollment{
		{RegistrationID: "op-dev", Attestation: dps.AttestationSymmetricKey, PrimaryKey: devKey,
			CredentialPolicy: &dps.CredentialPolicy{Issuer: "est", Validity: "1h", KeyTypes: keyTypes}},
		{GroupID: "op-group", Attestation: dps.AttestationSymmetricKey, PrimaryKey: groupKey,
			CredentialPolicy: &dps.CredentialPolicy{Issuer: "est"}},
		{RegistrationID: "plain-dev", Attestation: dps.AttestationSymmetricKey, PrimaryKey: devKey2},
	}})
}

func TestIssuanceReturnsChainTheHubAcceptsAndRefusesTheOnboardingKey(t *testing.T) {
	e := issuanceCloud(t)
	key := testpki.NewKey(t)
	r := registerWithCSR(t, e, devKey, "op-dev", dps.APIVersionCSR, "csr", base64.StdEncoding.EncodeToString(csrFor(t, key, "op-dev")))
	if r.status != http.StatusOK {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	var op dps.RegistrationOperationStatus
	if err := json.Unmarshal(r.body, &op); err != nil {
		t.Fatal(err)
	}
	st := op.RegistrationState
	if len(st.IssuedCertificateChain) < 1 || st.IssuedClientCertificate != "" {
		t.Fatalf("want issuedCertificateChain only at %s: %s", dps.APIVersionCSR, r.body)
	}
	var chain []*x509.Certificate
	for _, b := range st.IssuedCertificateChain {
		der, err := base64.StdEncoding.DecodeString(b)
		if err != nil {
			t.Fatalf("chain element is not base64 DER: %v", err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, c)
	}
	leaf := chain[0]
	if leaf.Subject.CommonName != "op-dev" || !leaf.PublicKey.(*ecdsa.PublicKey).Equal(key.Public()) {
		t.Fatalf("leaf %s is not for the CSR's key and name", leaf.Subject)
	}
	if st.TrustBundle == nil || len(st.TrustBundle.Certificates) != 1 {
		t.Fatalf("no trust bundle: %s", r.body)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(st.TrustBundle.Certificates[0].Certificate)) {
		t.Fatal("trust bundle certificate is not PEM")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("issued chain does not verify to the trust bundle: %v", err)
	}
	d, ok := e.c.Hub.Device("op-dev")
	if !ok || d.Authentication.Type != hub.AuthCertificateAuthority {
		t.Fatalf("hub device: %+v", d)
	}

	// The hub takes the device by its issued certificate...
	tc := tls.Certificate{PrivateKey: key, Leaf: leaf}
	for _, c := range chain {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	hc := e.c.Client(t, &tc)
	ev := call(t, hc, http.MethodPost, e.c.URL+"/devices/op-dev/messages/events?api-version=2021-04-12", "", "hi")
	if ev.status != http.StatusNoContent {
		t.Fatalf("hub refused the issued certificate: %d %s", ev.status, ev.body)
	}
	// ...and no longer by its onboarding key.
	tok := hub.SignSAS(mustB64(devKey), e.c.HubHostname+"/devices/op-dev", time.Now().Add(time.Hour), "")
	if ev := call(t, e.cl, http.MethodPost, e.c.URL+"/devices/op-dev/messages/events?api-version=2021-04-12", tok, "hi"); ev.status != http.StatusUnauthorized {
		t.Fatalf("hub accepted the onboarding key after issuance: %d", ev.status)
	}
}

func TestIssuanceLegacyFieldAnswersPEMString(t *testing.T) {
	e := issuanceCloud(t)
	key := testpki.NewKey(t)
	csrPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrFor(t, key, "op-dev")}))
	r := registerWithCSR(t, e, devKey, "op-dev", dps.APIVersionCSRPreview2021, "clientCertificateCsr", csrPEM)
	if r.status != http.StatusOK {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	st, _ := r.m["registrationState"].(map[string]any)
	s, _ := st["issuedClientCertificate"].(string)
	b, _ := pem.Decode([]byte(s))
	if b == nil || b.Type != "CERTIFICATE" {
		t.Fatalf("issuedClientCertificate is not a PEM string: %s", r.body)
	}
}

func TestIssuanceRefusals(t *testing.T) {
	e := issuanceCloud(t, "ec-p256")
	ec := testpki.NewKey(t)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	good := base64.StdEncoding.EncodeToString(csrFor(t, ec, "op-dev"))
	tampered := csrFor(t, ec, "op-dev")
	tampered[len(tampered)-3] ^= 0xff
	for _, c := range []struct {
		name, key, regID, version, field, csr, want string
	}{
		{"another registration id", devKey, "op-dev", dps.APIVersionCSR, "csr", base64.StdEncoding.EncodeToString(csrFor(t, ec, "plain-dev")), "not CN=op-dev"},
		{"key type not allowed", devKey, "op-dev", dps.APIVersionCSR, "csr", base64.StdEncoding.EncodeToString(csrFor(t, rk, "op-dev")), "rsa-2048 is not allowed"},
		{"bad signature", devKey, "op-dev", dps.APIVersionCSR, "csr", base64.StdEncoding.EncodeToString(tampered), "signature"},
		{"not base64", devKey, "op-dev", dps.APIVersionCSR, "csr", "%%%", "not base64 DER or PEM"},
		{"old api-version", devKey, "op-dev", "2021-10-01", "csr", good, "needs api-version 2025-07-01-preview"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := registerWithCSR(t, e, c.key, c.regID, c.version, c.field, c.csr)
			if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), c.want) {
				t.Fatalf("got %d %s, want 400 with %q", r.status, r.body, c.want)
			}
		})
	}
	if _, ok := e.c.Hub.Device("op-dev"); ok {
		t.Fatal("a refused request created the device")
	}
	if n := len(e.c.EST.Issued()); n != 0 {
		t.Fatalf("refused requests issued %d certificates", n)
	}
	// An enrollment without a credential policy issues nothing, as ADR.
	r := registerWithCSR(t, e, devKey2, "plain-dev", dps.APIVersionCSR, "csr", base64.StdEncoding.EncodeToString(csrFor(t, ec, "plain-dev")))
	if r.status != http.StatusOK || strings.Contains(string(r.body), "issuedCertificateChain") {
		t.Fatalf("got %d %s", r.status, r.body)
	}
}

func TestIssuanceForGroupDevice(t *testing.T) {
	e := issuanceCloud(t)
	key, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	r := registerWithCSR(t, e, derive(t, groupKey, "grp-dev-1"), "grp-dev-1", dps.APIVersionCSR, "csr", base64.StdEncoding.EncodeToString(csrFor(t, key, "grp-dev-1")))
	if r.status != http.StatusOK || !strings.Contains(string(r.body), "issuedCertificateChain") {
		t.Fatalf("got %d %s", r.status, r.body)
	}
}

func TestIssuanceKeepingTheOnboardingCredential(t *testing.T) {
	e := start(t, dps.Config{Enrollments: []dps.Enrollment{
		{RegistrationID: "keep-dev", Attestation: dps.AttestationSymmetricKey, PrimaryKey: devKey,
			CredentialPolicy: &dps.CredentialPolicy{Issuer: "est", OnboardingCredential: "keep"}},
	}})
	key := testpki.NewKey(t)
	r := registerWithCSR(t, e, devKey, "keep-dev", dps.APIVersionCSR, "csr", base64.StdEncoding.EncodeToString(csrFor(t, key, "keep-dev")))
	var op dps.RegistrationOperationStatus
	if r.status != http.StatusOK || json.Unmarshal(r.body, &op) != nil || len(op.RegistrationState.IssuedCertificateChain) == 0 {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	tc := tls.Certificate{PrivateKey: key}
	for _, b := range op.RegistrationState.IssuedCertificateChain {
		der, _ := base64.StdEncoding.DecodeString(b)
		tc.Certificate = append(tc.Certificate, der)
	}
	u := e.c.URL + "/devices/keep-dev/messages/events?api-version=2021-04-12"
	if ev := call(t, e.c.Client(t, &tc), http.MethodPost, u, "", "hi"); ev.status != http.StatusNoContent {
		t.Fatalf("hub refused the issued certificate: %d %s", ev.status, ev.body)
	}
	tok := hub.SignSAS(mustB64(devKey), e.c.HubHostname+"/devices/keep-dev", time.Now().Add(time.Hour), "")
	if ev := call(t, e.cl, http.MethodPost, u, tok, "hi"); ev.status != http.StatusNoContent {
		t.Fatalf("hub refused the kept onboarding key: %d %s", ev.status, ev.body)
	}
	// Registering again without a CSR: the hub no longer takes the chain.
	tokDPS := sasToken(t, devKey, "keep-dev", time.Hour, "upper")
	base := e.c.URL + "/" + scope + "/registrations/keep-dev"
	r = call(t, e.cl, http.MethodPut, base+"/register?api-version="+dps.APIVersionCSR, tokDPS, `{"registrationId":"keep-dev"}`)
	for i := 0; r.status == http.StatusAccepted && i < 10; i++ {
		r = call(t, e.cl, http.MethodGet, base+"/operations/"+r.m["operationId"].(string)+"?api-version="+dps.APIVersionCSR, tokDPS, "")
	}
	if ev := call(t, e.c.Client(t, &tc), http.MethodPost, u, "", "hi"); ev.status != http.StatusUnauthorized {
		t.Fatalf("hub still takes the chain after a registration without a CSR: %d", ev.status)
	}
}
