package adapter_test

import (
	"bytes"
	"strings"
	"testing"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/keys/api"
	"github.com/edgev2/edgev2/keys/derivation"
)

// TestKeydDerivedEncryptionIsPerDerivationAndSurvivesRestart runs on the
// file engine and on a SoftHSM token: each derivation gets its own AES key
// (same iv, other derivation: no decryption, no key-stream reuse), the
// ciphertext still decrypts after keyd restarts, and a second uid without
// org.edgev2.keys.use on the master is refused.
func TestKeydDerivedEncryptionIsPerDerivationAndSurvivesRestart(t *testing.T) {
	onEachEngine(t, func(t *testing.T, k *keyd) {
		ctx := ctxT(t)
		master, err := k.keys.CreateKey(ctx, "workload-master", "derive", nil)
		if err != nil {
			t.Fatal(err)
		}
		a, b := derivation.Strings("workload", "sensor-2", "g1"), derivation.Strings("workload", "sensor", "-2g1")
		iv := bytes.Repeat([]byte{9}, 12)
		secret := []byte("sensor-2's secret")
		ct, err := master.EncryptDerived(ctx, a, secret, iv, nil)
		if err != nil {
			t.Fatalf("EncryptDerived: %v", err)
		}
		if pt, err := master.DecryptDerived(ctx, a, ct, iv, nil); err != nil || !bytes.Equal(pt, secret) {
			t.Fatalf("DecryptDerived = %q, %v; want the secret", pt, err)
		}
		if _, err := master.DecryptDerived(ctx, b, ct, iv, nil); !fault.Is(err, fault.InvalidArgs) {
			t.Fatalf("DecryptDerived under another derivation: %v; want %s", err, bus.ErrInvalidArgs)
		}
		zeros, err := master.EncryptDerived(ctx, b, make([]byte, len(secret)), iv, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := range secret {
			zeros[i] ^= ct[i]
		}
		if bytes.Equal(zeros[:len(secret)], secret) {
			t.Fatal("zeros encrypted under another derivation with the same iv, XORed with the ciphertext, gave the plaintext")
		}
		// AES keys are out of reach of the HMAC-key methods.
		if _, err := master.ExportDerived(ctx, append([]byte{0, 0, 0, 2, 0, 0, 0, 30}, "edgev2 derived aes-256-gcm key"...)); !fault.Is(err, fault.InvalidArgs) {
			t.Fatalf("ExportDerived of an AES derivation input: %v; want %s", err, bus.ErrInvalidArgs)
		}

		k.svc.Restart(t)
		if pt, err := master.DecryptDerived(ctx, a, ct, iv, nil); err != nil || !bytes.Equal(pt, secret) {
			t.Fatalf("DecryptDerived after a keyd restart = %q, %v; want the secret", pt, err)
		}

		path := bus.ChildPath(api.ObjectPath, "keys", "workload-master")
		for _, method := range []string{"EncryptDerived", "DecryptDerived"} {
			_, errOut, code := k.gdbusAs(t, testenv.OtherUser, path, api.KeyInterface+"."+method, "[byte 0x01]", "aes-256-gcm", "[byte 0x01]", "{}")
			if code == 0 || !strings.Contains(errOut, bus.ErrNotAuthorized) {
				t.Errorf("%s as %s: exit %d, %q; want %s", method, testenv.OtherUser, code, errOut, bus.ErrNotAuthorized)
			}
		}
	})
}
