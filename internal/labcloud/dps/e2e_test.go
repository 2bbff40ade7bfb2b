package dps_test

import (
	"bytes"
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgev2/edgev2/internal/labcloud"
	"github.com/edgev2/edgev2/internal/labcloud/dps"
	"github.com/edgev2/edgev2/internal/labcloud/hub"
	"github.com/edgev2/edgev2/internal/testpki"
)

const (
	devKey   = "ZGV2aWNlLWtleS0wMTIzNDU2Nzg5YWJjZGVmMDEyMzQ="
	devKey2  = "c2Vjb25kLWtleS0wMTIzNDU2Nzg5YWJjZGVmMDEyMzQ="
	groupKey = "Z3JvdXAta2V5LTAxMjM0NTY3ODlhYmNkZWYwMTIzNDU="
	wrongKey = "d3Jvbmcta2V5LTAxMjM0NTY3ODlhYmNkZWYwMTIzNDU="
	scope    = dps.DefaultIDScope
)

// sasToken follows the Azure docs for DPS: sr = "{idScope}/registrations/{id}"
// (URL-encoded with the given case, or raw), string-to-sign sr + "\n" + se,
// HMAC-SHA256 with the base64-decoded key, skn=registration.
func sasToken(t *testing.T, keyB64, regID string, ttl time.Duration, form string) string {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(keyB64)
	if err != nil {
		t.Fatal(err)
	}
	sr := scope + "/registrations/" + regID
	switch form {
	case "upper":
		sr = url.QueryEscape(sr)
	case "lower":
		sr = strings.ReplaceAll(url.QueryEscape(sr), "%2F", "%2f")
	}
	se := strconv.FormatInt(time.Now().Add(ttl).Unix(), 10)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(sr + "\n" + se))
	return "SharedAccessSignature sr=" + sr + "&sig=" + url.QueryEscape(base64.StdEncoding.EncodeToString(m.Sum(nil))) + "&se=" + se + "&skn=registration"
}

func derive(t *testing.T, groupB64, regID string) string {
	k, _ := base64.StdEncoding.DecodeString(groupB64)
	m := hmac.New(sha256.New, k)
	m.Write([]byte(regID))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

type env struct {
	c  *labcloud.Cloud
	cl *http.Client
}

func start(t *testing.T, cfg dps.Config) *env {
	t.Helper()
	c := labcloud.StartTestCloud(t, labcloud.Config{DPS: cfg})
	return &env{c: c, cl: c.Client(t, nil)}
}

type resp struct {
	status int
	header http.Header
	body   []byte
	m      map[string]any
}

func call(t *testing.T, cl *http.Client, method, u, auth, body string) resp {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = bytes.NewReader([]byte(body))
	}
	req, _ := http.NewRequest(method, u, rd)
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	res, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	r := resp{status: res.StatusCode, header: res.Header, body: data}
	json.Unmarshal(data, &r.m)
	return r
}

func (e *env) register(t *testing.T, cl *http.Client, regID, auth, body, version string) resp {
	if body == "" {
		body = `{"registrationId":"` + regID + `"}`
	}
	return call(t, cl, "PUT", e.c.URL+"/"+scope+"/registrations/"+regID+"/register?api-version="+version, auth, body)
}

func (e *env) poll(t *testing.T, cl *http.Client, regID, op, auth string) resp {
	return call(t, cl, "GET", e.c.URL+"/"+scope+"/registrations/"+regID+"/operations/"+url.PathEscape(op)+"?api-version=2021-10-01", auth, "")
}

// provision registers and polls until assigned, checking the 202s.
func (e *env) provision(t *testing.T, cl *http.Client, regID string, auth func() string, body string, polls int) map[string]any {
	t.Helper()
	r := e.register(t, cl, regID, auth(), body, "2021-10-01")
	if r.status != 202 || r.m["status"] != "assigning" || r.header.Get("Retry-After") == "" {
		t.Fatalf("register: %d %s (Retry-After %q)", r.status, r.body, r.header.Get("Retry-After"))
	}
	op := r.m["operationId"].(string)
	for i := 0; i < polls; i++ {
		r := e.poll(t, cl, regID, op, auth())
		st, _ := r.m["registrationState"].(map[string]any)
		if r.status != 202 || r.m["status"] != "assigning" || r.header.Get("Retry-After") == "" ||
			st["registrationId"] != regID || st["status"] != "assigning" {
			t.Fatalf("poll %d: %d %s (Retry-After %q), want 202 assigning with registrationState", i+1, r.status, r.body, r.header.Get("Retry-After"))
		}
	}
	r = e.poll(t, cl, regID, op, auth())
	if r.status != 200 || r.m["status"] != "assigned" || r.m["operationId"] != op {
		t.Fatalf("poll %d: %d %s, want 200 assigned", polls+1, r.status, r.body)
	}
	return r.m["registrationState"].(map[string]any)
}

func TestSymmetricIndividualAssignedAfterConfiguredPollsWithEverySRForm(t *testing.T) {
	for _, form := range []string{"upper", "lower", "raw"} {
		t.Run(form, func(t *testing.T) {
			e := start(t, dps.Config{AssigningPolls: 2, Enrollments: []dps.Enrollment{
				{RegistrationID: "dev-1", Attestation: dps.AttestationSymmetricKey, PrimaryKey: devKey, SecondaryKey: devKey2, DeviceID: "hub-dev-1"}}})
			st := e.provision(t, e.cl, "dev-1", func() string { return sasToken(t, devKey2, "dev-1", time.Hour, form) }, "", 2)
			if st["registrationId"] != "dev-1" || st["deviceId"] != "hub-dev-1" || st["assignedHub"] != e.c.HubHostname ||
				st["status"] != "assigned" || st["substatus"] != "initialAssignment" || st["etag"] == "" || st["payload"] != nil {
				t.Errorf("registrationState %v", st)
			}
			for _, k := range []string{"createdDateTimeUtc", "lastUpdatedDateTimeUtc"} {
				if _, err := time.Parse(time.RFC3339Nano, st[k].(string)); err != nil || !strings.Contains(st[k].(string), ".") {
					t.Errorf("%s = %v: want RFC 3339 with fractional seconds", k, st[k])
				}
			}
			d, ok := e.c.Hub.Device("hub-dev-1")
			if !ok || d.Authentication.Type != "sas" || d.Authentication.SymmetricKey.PrimaryKey != devKey {
				t.Errorf("hub device %+v (found %v), want sas with the enrollment key", d, ok)
			}
		})
	}
}

func TestSymmetricGroupDeviceUsesDerivedKeyAndIsCreatedInHub(t *testing.T) {
	e := start(t, dps.Config{Enrollments: []dps.Enrollment{{GroupID: "lab-group", Attestation: dps.AttestationSymmetricKey, PrimaryKey: groupKey}}})
	key := derive(t, groupKey, "grp-dev-7")
	st := e.provision(t, e.cl, "grp-dev-7", func() string { return sasToken(t, key, "grp-dev-7", time.Hour, "upper") }, "", 0)
	if st["deviceId"] != "grp-dev-7" {
		t.Errorf("deviceId %v", st["deviceId"])
	}
	d, ok := e.c.Hub.Device("grp-dev-7")
	if !ok || d.Authentication.SymmetricKey.PrimaryKey != key {
		t.Errorf("hub device %+v, want primary key %s", d, key)
	}
	// The device can now use the hub with that key.
	tok := hub.SignSAS(mustB64(key), e.c.HubHostname+"/devices/grp-dev-7", time.Now().Add(time.Hour), "")
	if r := call(t, e.cl, "POST", e.c.URL+"/devices/grp-dev-7/messages/events?api-version=2020-03-13", tok, "{}"); r.status != 204 {
		t.Errorf("message with the derived key: %d %s", r.status, r.body)
	}
}

func mustB64(s string) []byte { b, _ := base64.StdEncoding.DecodeString(s); return b }

func TestPayloadEchoedAndReRegistrationReportsReprovisioned(t *testing.T) {
	e := start(t, dps.Config{Enrollments: []dps.Enrollment{{RegistrationID: "dev-p", Attestation: dps.AttestationSymmetricKey, PrimaryKey: devKey}}})
	auth := func() string { return sasToken(t, devKey, "dev-p", time.Hour, "upper") }
	st := e.provision(t, e.cl, "dev-p", auth, `{"registrationId":"dev-p","payload":{"modelId":"dtmi:lab:x;1","n":[1,2]}}`, 0)
	if got, _ := json.Marshal(st["payload"]); string(got) != `{"modelId":"dtmi:lab:x;1","n":[1,2]}` {
		t.Errorf("payload echo %s", got)
	}
	first := st["createdDateTimeUtc"]
	st = e.provision(t, e.cl, "dev-p", auth, "", 0)
	if st["substatus"] != "reprovisionedToInitialAssignment" || st["createdDateTimeUtc"] != first {
		t.Errorf("re-registration state %v", st)
	}
}

func wantDPSError(t *testing.T, r resp, status, code int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	if len(r.m) != 4 || r.m["errorCode"] != float64(code) || r.m["message"] == "" || len(r.m["trackingId"].(string)) != 36 {
		t.Errorf("body %s, want {errorCode:%d, trackingId, message, timestampUtc}", r.body, code)
	}
	if _, err := time.Parse(time.RFC3339Nano, r.m["timestampUtc"].(string)); err != nil {
		t.Errorf("timestampUtc: %v", err)
	}
}

func TestRegistrationRefusals(t *testing.T) {
	e := start(t, dps.Config{Enrollments: []dps.Enrollment{
		{RegistrationID: "dev-1", Attestation: dps.AttestationSymmetricKey, PrimaryKey: devKey},
		{RegistrationID: "off-1", Attestation: dps.AttestationSymmetricKey, PrimaryKey: devKey, Disabled: true}}})
	good := sasToken(t, devKey, "dev-1", time.Hour, "upper")
	for _, c := range []struct {
		name, regID, auth, body, version string
		status, code                     int
	}{
		{"expired token", "dev-1", sasToken(t, devKey, "dev-1", -time.Second, "upper"), "", "2021-10-01", 401, 401002},
		{"wrong key", "dev-1", sasToken(t, wrongKey, "dev-1", time.Hour, "upper"), "", "2021-10-01", 401, 401002},
		{"token for another registration", "dev-1", sasToken(t, devKey, "dev-2", time.Hour, "upper"), "", "2021-10-01", 401, 401002},
		{"wrong skn", "dev-1", strings.Replace(good, "skn=registration", "skn=iothubowner", 1), "", "2021-10-01", 401, 401002},
		{"no credentials", "dev-1", "", "", "2021-10-01", 401, 401002},
		{"garbage token", "dev-1", "SharedAccessSignature nonsense", "", "2021-10-01", 401, 401002},
		{"unknown enrollment", "ghost", sasToken(t, devKey, "ghost", time.Hour, "upper"), "", "2021-10-01", 404, 404201},
		{"disabled enrollment", "off-1", sasToken(t, devKey, "off-1", time.Hour, "upper"), "", "2021-10-01", 401, 401002},
		{"unsupported api-version", "dev-1", good, "", "2018-11-01", 400, 400001},
		{"missing api-version", "dev-1", good, "", "", 400, 400001},
		{"body names another registration", "dev-1", good, `{"registrationId":"dev-2"}`, "2021-10-01", 400, 400005},
		{"body not JSON", "dev-1", good, `{"registrationId":`, "2021-10-01", 400, 400004},
	} {
		t.Run(c.name, func(t *testing.T) {
			wantDPSError(t, e.register(t, e.cl, c.regID, c.auth, c.body, c.version), c.status, c.code)
		})
	}
	for _, v := range dps.APIVersions {
		if r := e.register(t, e.cl, "dev-1", good, "", v); r.status != 202 {
			t.Errorf("api-version %s: %d %s", v, r.status, r.body)
		}
	}
	wantDPSError(t, e.poll(t, e.cl, "dev-1", "4.0.nope", good), 404, 404202)
}

func TestThrottledRequestsGet429WithRetryAfter(t *testing.T) {
	e := start(t, dps.Config{ThrottleFirst: 2, RetryAfter: 3, Enrollments: []dps.Enrollment{
		{RegistrationID: "dev-t", Attestation: dps.AttestationSymmetricKey, PrimaryKey: devKey}}})
	auth := sasToken(t, devKey, "dev-t", time.Hour, "upper")
	for i := 0; i < 2; i++ {
		r := e.register(t, e.cl, "dev-t", auth, "", "2021-10-01")
		wantDPSError(t, r, 429, 429001)
		if r.header.Get("Retry-After") != "3" {
			t.Errorf("Retry-After %q, want 3", r.header.Get("Retry-After"))
		}
	}
	if r := e.register(t, e.cl, "dev-t", auth, "", "2021-10-01"); r.status != 202 || r.header.Get("Retry-After") != "3" {
		t.Errorf("third request: %d %s", r.status, r.body)
	}
}

// newCert makes a certificate for cn signed by parent (self-signed if nil).
func newCert(t *testing.T, cn string, isCA bool, parent *tls.Certificate) tls.Certificate {
	t.Helper()
	key := testpki.NewKey(t)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IsCA: isCA, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	signer, signerKey := tmpl, crypto.Signer(key)
	if parent != nil {
		signer, signerKey = parent.Leaf, parent.PrivateKey.(crypto.Signer)
	}
	return testpki.TLS(testpki.Sign(t, tmpl, signer, key.Public(), signerKey), key)
}

func writePEM(t *testing.T, c tls.Certificate) string {
	t.Helper()
	return testpki.WritePEM(t, filepath.Join(t.TempDir(), c.Leaf.Subject.CommonName+".pem"), c.Leaf)
}

func TestX509IndividualAndGroupEnrollments(t *testing.T) {
	dev := newCert(t, "x509-dev", false, nil)
	ca := newCert(t, "Lab Group CA", true, nil)
	member := newCert(t, "x509-member", false, &ca)
	member.Certificate = append(member.Certificate, ca.Leaf.Raw)
	e := start(t, dps.Config{AssigningPolls: 1, Enrollments: []dps.Enrollment{
		{RegistrationID: "x509-dev", Attestation: dps.AttestationX509, CertificateFile: writePEM(t, dev)},
		{GroupID: "x509-group", Attestation: dps.AttestationX509, CertificateFile: writePEM(t, ca)}}})
	none := func() string { return "" }
	for _, c := range []struct {
		cert *tls.Certificate
		id   string
	}{{&dev, "x509-dev"}, {&member, "x509-member"}} {
		st := e.provision(t, e.c.Client(t, c.cert), c.id, none, "", 1)
		d, ok := e.c.Hub.Device(c.id)
		_, t256 := hub.Thumbprints(c.cert.Leaf)
		if st["deviceId"] != c.id || !ok {
			t.Errorf("%s: state %v, hub device %+v", c.id, st, d)
		}
		switch c.id {
		case "x509-dev": // individual: the leaf's thumbprint
			if d.Authentication.Type != "selfSigned" || d.Authentication.X509Thumbprint.PrimaryThumbprint != t256 {
				t.Errorf("%s: hub device %+v", c.id, d)
			}
		default: // group: authenticated by chain, as DPS creates them
			if d.Authentication.Type != "certificateAuthority" {
				t.Errorf("%s: hub device %+v, want certificateAuthority", c.id, d)
			}
		}
	}
	impostor := newCert(t, "x509-dev", false, nil)
	wantDPSError(t, e.register(t, e.c.Client(t, &impostor), "x509-dev", "", "", "2021-10-01"), 401, 401002)
	stranger := newCert(t, "x509-stranger", false, nil)
	wantDPSError(t, e.register(t, e.c.Client(t, &stranger), "x509-stranger", "", "", "2021-10-01"), 401, 401002)
	wantDPSError(t, e.register(t, e.c.Client(t, &dev), "x509-member", "", "", "2021-10-01"), 401, 401002)
}

// TestX509GroupDeviceRenewedCertificateAcceptedByHub: a device of an X.509
// enrollment group is a certificateAuthority device in the hub, so after
// its certificate is renewed under the same CA (new key, new thumbprint)
// the hub accepts it without a new DPS registration; a certificate with the
// same CN from another CA, or a member's chain for another device id, is
// refused.
func TestX509GroupDeviceRenewedCertificateAcceptedByHub(t *testing.T) {
	ca := newCert(t, "Lab Group CA", true, nil)
	member := newCert(t, "x509-member", false, &ca)
	member.Certificate = append(member.Certificate, ca.Leaf.Raw)
	e := start(t, dps.Config{AssigningPolls: 0, Enrollments: []dps.Enrollment{
		{GroupID: "x509-group", Attestation: dps.AttestationX509, CertificateFile: writePEM(t, ca)}}})
	e.provision(t, e.c.Client(t, &member), "x509-member", func() string { return "" }, "", 0)
	get := func(cert *tls.Certificate, id string) resp {
		return call(t, e.c.Client(t, cert), "GET", e.c.URL+"/devices/"+id+"?api-version=2021-04-12", "", "")
	}
	if r := get(&member, "x509-member"); r.status != 200 {
		t.Fatalf("hub with the registered certificate: %d %s", r.status, r.body)
	}
	renewed := newCert(t, "x509-member", false, &ca)
	renewed.Certificate = append(renewed.Certificate, ca.Leaf.Raw)
	if r := get(&renewed, "x509-member"); r.status != 200 {
		t.Fatalf("hub with the renewed certificate: %d %s", r.status, r.body)
	}
	otherCA := newCert(t, "Other CA", true, nil)
	forged := newCert(t, "x509-member", false, &otherCA)
	forged.Certificate = append(forged.Certificate, otherCA.Leaf.Raw)
	if r := get(&forged, "x509-member"); r.status != 401 {
		t.Errorf("hub with a certificate of another CA: %d %s", r.status, r.body)
	}
	sibling := newCert(t, "x509-sibling", false, &ca) // never registered
	sibling.Certificate = append(sibling.Certificate, ca.Leaf.Raw)
	if r := get(&sibling, "x509-member"); r.status != 401 {
		t.Errorf("hub with an unregistered member's certificate for x509-member: %d %s", r.status, r.body)
	}
}
