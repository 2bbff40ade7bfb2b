package dps_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgev2/edgev2/internal/labcloud/dps"
	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/internal/tpm"
)

// tpmSAS is a DPS token for regID whose signature comes from sign.
func tpmSAS(t *testing.T, regID string, sign func([]byte) []byte) string {
	t.Helper()
	sr := url.QueryEscape(scope + "/registrations/" + regID)
	se := strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)
	sig := sign([]byte(sr + "\n" + se))
	return "SharedAccessSignature sr=" + sr + "&sig=" + url.QueryEscape(base64.StdEncoding.EncodeToString(sig)) + "&se=" + se + "&skn=registration"
}

func TestTPMEnrollmentIssuesAKeyOnlyTheEnrolledTPMCanUse(t *testing.T) {
	testenv.RequireRoot(t)
	ctx := context.Background()
	sw := testenv.StartSwtpm(t)
	tp, err := tpm.Open(ctx, tpm.Config{Address: sw.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	ek, srk, err := tp.AttestationKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	regID := tpm.RegistrationID(ek.Marshalled)
	e := start(t, dps.Config{AssigningPolls: 1, Enrollments: []dps.Enrollment{
		{RegistrationID: regID, Attestation: dps.AttestationTPM, EndorsementKey: base64.StdEncoding.EncodeToString(ek.Marshalled)},
	}})
	b64 := base64.StdEncoding.EncodeToString
	body := `{"registrationId":"` + regID + `","tpm":{"endorsementKey":"` + b64(ek.Marshalled) + `","storageRootKey":"` + b64(srk.Marshalled) + `"}}`
	tpmSign := func(data []byte) []byte {
		sig, err := tp.Sign(ctx, data)
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	wrongSign := func(data []byte) []byte {
		m := hmac.New(sha256.New, []byte("not the issued key"))
		m.Write(data)
		return m.Sum(nil)
	}

	// A SAS before any challenge: nothing was issued to verify it with.
	if r := e.register(t, e.cl, regID, tpmSAS(t, regID, wrongSign), body, "2021-10-01"); r.status != 401 || !strings.Contains(string(r.body), "register without Authorization first") {
		t.Fatalf("SAS before the challenge: %d %s", r.status, r.body)
	}
	r := e.register(t, e.cl, regID, "", body, "2021-10-01")
	key, _ := r.m["authenticationKey"].(string)
	if r.status != 401 || key == "" {
		t.Fatalf("challenge: %d %s; want 401 with an authenticationKey", r.status, r.body)
	}
	// The real service's challenge body: message, authenticationKey and
	// keyName "registration" (the skn the SAS must then carry), nothing else.
	if r.m["keyName"] != "registration" || r.m["message"] != "Authorization required, resend request using supplied key" || len(r.m) != 3 {
		t.Fatalf("challenge body %s; want exactly message, authenticationKey and keyName \"registration\" like Azure's DPS", r.body)
	}
	blob, _ := base64.StdEncoding.DecodeString(key)
	if err := tp.ImportAuthKey(ctx, blob); err != nil {
		t.Fatalf("the enrolled TPM cannot import DPS's key: %v", err)
	}
	if r := e.register(t, e.cl, regID, tpmSAS(t, regID, wrongSign), body, "2021-10-01"); r.status != 401 {
		t.Fatalf("SAS with another key after the challenge: %d %s", r.status, r.body)
	}
	rs := e.provision(t, e.cl, regID, func() string { return tpmSAS(t, regID, tpmSign) }, body, 1)
	tpmState, _ := rs["tpm"].(map[string]any)
	hubKey, _ := tpmState["authenticationKey"].(string)
	if rs["deviceId"] != regID || hubKey == "" {
		t.Fatalf("assigned state %v; want deviceId %s and tpm.authenticationKey", rs, regID)
	}
	blob, _ = base64.StdEncoding.DecodeString(hubKey)
	if err := tp.ImportAuthKey(ctx, blob); err != nil {
		t.Fatalf("re-import of registrationState.tpm.authenticationKey: %v", err)
	}
	// The hub knows the device by the re-imported key.
	d, ok := e.c.Hub.Device(regID)
	if !ok || d.Authentication.SymmetricKey == nil {
		t.Fatalf("hub device %+v", d)
	}
	hk, _ := base64.StdEncoding.DecodeString(d.Authentication.SymmetricKey.PrimaryKey)
	m := hmac.New(sha256.New, hk)
	m.Write([]byte("probe"))
	if !hmac.Equal(tpmSign([]byte("probe")), m.Sum(nil)) {
		t.Fatal("the TPM's key after re-import is not the hub's device key")
	}

	// Someone claiming the enrolled EK with another body EK is refused.
	other := strings.Replace(body, b64(ek.Marshalled), b64(srk.Marshalled), 1)
	if r := e.register(t, e.cl, regID, "", other, "2021-10-01"); r.status != 401 || !strings.Contains(string(r.body), "not the one enrolled") {
		t.Fatalf("challenge with another EK: %d %s", r.status, r.body)
	}
	if r := e.register(t, e.cl, "not-enrolled", "", strings.Replace(body, regID, "not-enrolled", 1), "2021-10-01"); r.status != 404 {
		t.Fatalf("challenge for an unknown registration: %d %s", r.status, r.body)
	}
}
