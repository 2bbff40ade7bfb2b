package keys_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	godbus "github.com/godbus/dbus/v5"

	"github.com/edgev2/edgev2/internal/fault"
	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/keys"
	"github.com/edgev2/edgev2/keys/client"
)

// startKeydOnP11Kit starts a pkcs11 keyd whose token is a SoftHSM token
// remoted through `p11-kit server` and reached with p11-kit-client.so.
func startKeydOnP11Kit(t *testing.T, label, extra string) (*keyd, *testenv.P11KitServer) {
	t.Helper()
	testenv.RequireRoot(t)
	uid, gid := testenv.EnsureUser(t, testenv.ServiceUser)
	tok := testenv.NewSoftHSMToken(t, label, uid, gid)
	srv := testenv.StartP11KitServer(t, tok, testenv.ServiceUser)
	k := &keyd{engine: "pkcs11", dir: testenv.SharedTempDir(t, "keyd"), token: tok, env: srv.Env()}
	k.bus = testenv.StartBus(t)
	k.polkit = testenv.StartPolkit(t, k.bus)
	cfg := fmt.Sprintf("homedir = %q\npkcs11_lib_path = %q\npkcs11_base_slot = %q\n%s", k.dir, srv.ClientLib, tok.URI(), extra)
	cfgPath := filepath.Join(k.dir, "keyd.toml")
	os.WriteFile(cfgPath, []byte(cfg), 0o600)
	os.Chown(cfgPath, uid, gid)
	os.Chown(k.dir, uid, gid)
	k.opts = testenv.ServiceOptions{
		Binary: testenv.BuildBinary(t, "./cmd/edgev2-keyd"), Args: []string{"--config", cfgPath, "--log-level", "debug"},
		User: testenv.ServiceUser, Env: k.env, BusName: keys.BusName,
	}
	k.svc = testenv.StartService(t, k.bus, k.opts)
	k.conn = k.bus.Conn(t)
	k.keys = client.New(k.conn)
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
	call := k.conn.Object(keys.BusName, keys.ObjectPath).Call(keys.Interface+".CreateKey", 0, "enc",
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
