package adapter_test

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/keys"
	"github.com/edgev2/edgev2/keys/api"
)

// startKeydOnP11Kit starts a pkcs11 keyd whose token is a SoftHSM token
// remoted through `p11-kit server` and reached with p11-kit-client.so.
func startKeydOnP11Kit(t *testing.T, label, extra string) (*keyd, *testenv.P11KitServer) {
	t.Helper()
	testenv.RequireRoot(t)
	uid, gid := testenv.EnsureUser(t, testenv.ServiceUser)
	tok := testenv.NewSoftHSMToken(t, label, uid, gid)
	srv := testenv.StartP11KitServer(t, tok, testenv.ServiceUser)
	k := startKeydOn(t, "pkcs11", testenv.Daemon{Env: srv.Env(),
		Config: fmt.Sprintf("pkcs11_lib_path = %q\npkcs11_base_slot = %q\n%s", srv.ClientLib, tok.URI(), extra)})
	return k, srv
}

// TestKeydThroughP11KitRefusesKeysTheTokenCannotUse: p11-kit 0.24 does not
// forward CKM_AES_GCM, so an encrypt key made there could never encrypt.
// keyd asks the token at start and refuses it with NotSupported naming the
// mechanism — not InvalidArgs, the caller did nothing wrong — and writes
// nothing; what the token can do still works.
func TestKeydThroughP11KitRefusesKeysTheTokenCannotUse(t *testing.T) {
	k, _ := startKeydOnP11Kit(t, "edgev2-p11kit-caps", "")
	ctx := ctxT(t)
	mechs, err := k.keys.TokenMechanisms(ctx)
	if err != nil {
		t.Fatal(err)
	}
	has := func(m string) bool {
		for _, x := range mechs {
			if x == m {
				return true
			}
		}
		return false
	}
	if !has("CKM_ECDSA") || !has("CKM_SHA256_HMAC") || has("CKM_AES_GCM") {
		t.Fatalf("TokenMechanisms = %v; want CKM_ECDSA and CKM_SHA256_HMAC, and no CKM_AES_GCM through p11-kit", mechs)
	}
	for _, value := range [][]byte{nil, make([]byte, 32)} {
		_, err := k.keys.CreateKey(ctx, "enc", "encrypt", value)
		if !fault.Is(err, fault.NotSupported) || !strings.Contains(err.Error(), "CKM_AES_GCM") {
			t.Fatalf("CreateKey usage=encrypt (value given: %v) through p11-kit = %v; want NotSupported naming CKM_AES_GCM", value != nil, err)
		}
	}
	// The wire error name is the contract's.
	var p godbus.ObjectPath
	call := k.conn.Object(api.BusName, api.ObjectPath).Call(api.Interface+".CreateKey", 0, "enc",
		map[string]godbus.Variant{"usage": godbus.MakeVariant("encrypt")})
	if derr, ok := call.Store(&p).(godbus.Error); !ok || derr.Name != "org.edgev2.Error.NotSupported" {
		t.Fatalf("CreateKey encrypt on the wire = %v; want org.edgev2.Error.NotSupported", call.Err)
	}
	if _, err := k.keys.GetKey(ctx, "enc"); !fault.Is(err, fault.NotFound) {
		t.Fatalf("GetKey after the refused create = %v; want NotFound (nothing written to the token)", err)
	}
	// What the token can do works through the same path.
	if _, err := k.keys.CreateKey(ctx, "hmac", "sign", nil); err != nil {
		t.Fatalf("CreateKey sign through p11-kit: %v", err)
	}
	if _, err := k.keys.Key("hmac").Sign(ctx, keys.MechHMACSHA256, []byte("x")); err != nil {
		t.Fatalf("Sign hmac-sha256 through p11-kit: %v", err)
	}
	if _, err := k.keys.CreateKeyPair(ctx, "ec", "ec-p256"); err != nil {
		t.Fatalf("CreateKeyPair ec-p256 through p11-kit: %v", err)
	}
	if _, err := k.keys.Key("ec").Sign(ctx, keys.MechECDSASHA256, []byte("x")); err != nil {
		t.Fatalf("Sign ecdsa-sha256 through p11-kit: %v", err)
	}
	if !strings.Contains(k.svc.Output(), "CKM_AES_GCM") {
		t.Errorf("keyd did not warn at start that the token lacks CKM_AES_GCM:\n%s", k.svc.Output())
	}
}

// signUntil calls Sign until it succeeds or the deadline passes; every
// failure on the way must be Unavailable naming the token.
func signUntil(t *testing.T, k *keyd, id, token string, deadline time.Duration) []byte {
	t.Helper()
	ctx := ctxT(t)
	var sig []byte
	testenv.EventuallyNoError(t, deadline, func() (err error) {
		sig, err = k.keys.Key(id).Sign(ctx, keys.MechECDSASHA256, []byte("after the outage"))
		if err != nil && (!fault.Is(err, fault.Unavailable) || !strings.Contains(err.Error(), token)) {
			t.Fatalf("Sign while the token comes back = %v; want Unavailable naming token %q", err, token)
		}
		return err
	}, "keyd did not resume after the token came back; its output:\n%s", k.svc)
	return sig
}

// TestKeydThroughP11KitRecoversWhenTheTokenServerRestarts: the process
// forwarding the token dies (every later call fails CKR_DEVICE_ERROR) and
// comes back on the same socket. Calls in between are Unavailable naming
// the token; then keyd, never restarted, signs again with the same keys —
// twice over, so recovery is not a one-shot.
func TestKeydThroughP11KitRecoversWhenTheTokenServerRestarts(t *testing.T) {
	const label = "edgev2-p11kit-outage"
	k, srv := startKeydOnP11Kit(t, label, "")
	ctx := ctxT(t)
	key, err := k.keys.CreateKeyPair(ctx, "device-id", "ec-p256")
	if err != nil {
		t.Fatal(err)
	}
	props, err := key.Properties(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.keys.CreateKey(ctx, "sas", "sign", nil); err != nil {
		t.Fatal(err)
	}
	pid := k.svc.Pid()
	for round := 1; round <= 2; round++ {
		srv.Kill(t)
		for i := 0; i < 3; i++ {
			_, err := k.keys.Key("device-id").Sign(ctx, keys.MechECDSASHA256, []byte("during the outage"))
			if !fault.Is(err, fault.Unavailable) || !strings.Contains(err.Error(), label) {
				t.Fatalf("round %d: Sign with the token server down = %v; want Unavailable naming token %q", round, err, label)
			}
		}
		if _, err := k.keys.CreateKeyPair(ctx, fmt.Sprintf("during-%d", round), "ec-p256"); !fault.Is(err, fault.Unavailable) {
			t.Fatalf("round %d: CreateKeyPair with the token server down = %v; want Unavailable", round, err)
		}
		if round == 1 {
			// Let keyd try (and fail) to reconnect while the server is down.
			waitOutput(t, k, "pkcs11 token still unavailable", 60*time.Second)
			if _, err := k.keys.Key("device-id").Sign(ctx, keys.MechECDSASHA256, []byte("x")); !fault.Is(err, fault.Unavailable) || !strings.Contains(err.Error(), label) {
				t.Fatalf("Sign while keyd reconnects = %v; want Unavailable naming token %q", err, label)
			}
		}
		srv.Start(t)
		sig := signUntil(t, k, "device-id", label, 90*time.Second)
		pub, _ := x509.ParsePKIXPublicKey(props.PublicKeyDER)
		digest := sha256.Sum256([]byte("after the outage"))
		if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), digest[:], sig) {
			t.Fatalf("round %d: the signature after recovery does not verify with the key's public key", round)
		}
		if _, err := k.keys.Key("sas").Sign(ctx, keys.MechHMACSHA256, []byte("x")); err != nil {
			t.Fatalf("round %d: HMAC after recovery: %v", round, err)
		}
		if _, err := k.keys.CreateKeyPair(ctx, fmt.Sprintf("after-%d", round), "ec-p256"); err != nil {
			t.Fatalf("round %d: CreateKeyPair after recovery: %v", round, err)
		}
	}
	if !k.svc.IsRunning() || k.svc.Pid() != pid {
		t.Fatalf("keyd was restarted (pid %d → %d); it must recover by itself", pid, k.svc.Pid())
	}
	if os.Getenv("I14DEBUG") != "" {
		t.Log(k.svc.Output())
	}
	if !strings.Contains(k.svc.Output(), "pkcs11 token back") {
		t.Errorf("keyd did not log that the token is back:\n%s", k.svc.Output())
	}
}

// waitOutput polls keyd's output for text, up to deadline.
func waitOutput(t *testing.T, k *keyd, text string, deadline time.Duration) {
	t.Helper()
	testenv.Eventually(t, deadline, func() bool { return strings.Contains(k.svc.Output(), text) },
		"keyd did not log %q:\n%s", text, k.svc)
}
