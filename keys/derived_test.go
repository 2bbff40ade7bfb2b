package keys

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"testing"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/keys/derivation"
)

// TestEncryptDerivedKeysAreIndependentPerDerivation: the same iv under two
// derivations gives unrelated key streams, so one holder cannot use the
// other's iv to decrypt (encrypt zeros, XOR) or decrypt directly.
func TestEncryptDerivedKeysAreIndependentPerDerivation(t *testing.T) {
	ctx := context.Background()
	s, _ := newFileService(t)
	master := bytes.Repeat([]byte{7}, 32)
	if _, _, err := s.CreateKey(ctx, "master", UsageDerive, master); err != nil {
		t.Fatal(err)
	}
	a, b := derivation.Strings("workload", "sensor-2", "g1"), derivation.Strings("workload", "sensor", "-2g1")
	iv := bytes.Repeat([]byte{1}, 12)
	secret := []byte("sensor-2's secret reading")
	ct, err := s.EncryptDerived(ctx, "master", a, MechAES256GCM, secret, CipherOptions{IV: iv})
	if err != nil {
		t.Fatal(err)
	}
	// The key is HMAC-SHA256(master, E(label, derivation)), as documented.
	m := hmac.New(sha256.New, master)
	m.Write(derivation.Encode([]byte(derivedAESLabel), a))
	block, _ := aes.NewCipher(m.Sum(nil))
	aead, _ := cipher.NewGCM(block)
	if want := aead.Seal(nil, iv, secret, nil); !bytes.Equal(ct, want) {
		t.Fatalf("EncryptDerived = %x, want the documented derivation's %x", ct, want)
	}
	if pt, err := s.DecryptDerived(ctx, "master", a, MechAES256GCM, ct, CipherOptions{IV: iv}); err != nil || !bytes.Equal(pt, secret) {
		t.Fatalf("DecryptDerived with the same derivation = %q, %v", pt, err)
	}
	if _, err := s.DecryptDerived(ctx, "master", b, MechAES256GCM, ct, CipherOptions{IV: iv}); !fault.Is(err, fault.InvalidArgs) {
		t.Fatalf("DecryptDerived under another derivation: %v, want InvalidArgs (authentication failed)", err)
	}
	zeros, err := s.EncryptDerived(ctx, "master", b, MechAES256GCM, make([]byte, len(secret)), CipherOptions{IV: iv})
	if err != nil {
		t.Fatal(err)
	}
	xored := make([]byte, len(secret))
	for i := range xored {
		xored[i] = zeros[i] ^ ct[i]
	}
	if bytes.Equal(xored, secret) {
		t.Fatal("encrypting zeros under another derivation with the same iv recovered the plaintext")
	}
	// Random ivs: iv in front, and it round-trips.
	ct2, err := s.EncryptDerived(ctx, "master", a, MechAES256GCM, secret, CipherOptions{})
	if err != nil || len(ct2) != 12+len(secret)+16 {
		t.Fatalf("EncryptDerived without iv: %d bytes, %v", len(ct2), err)
	}
	if pt, err := s.DecryptDerived(ctx, "master", a, MechAES256GCM, ct2, CipherOptions{}); err != nil || !bytes.Equal(pt, secret) {
		t.Fatalf("DecryptDerived of a random-iv ciphertext = %q, %v", pt, err)
	}
}

// TestDerivedAESKeysAreOutOfReachOfSignAndExportDerived: the HMAC key
// methods refuse derivation data shaped like an AES derivation input.
func TestDerivedAESKeysAreOutOfReachOfSignAndExportDerived(t *testing.T) {
	ctx := context.Background()
	s, _ := newFileService(t)
	if _, _, err := s.CreateKey(ctx, "master", UsageDerive, nil); err != nil {
		t.Fatal(err)
	}
	input := derivation.Encode([]byte(derivedAESLabel), derivation.Strings("workload", "sensor", "g1"))
	if _, err := s.ExportDerived(ctx, "master", input); !fault.Is(err, fault.InvalidArgs) {
		t.Fatalf("ExportDerived of an AES derivation input: %v, want InvalidArgs", err)
	}
	if _, err := s.SignDerived(ctx, "master", input, MechHMACSHA256, []byte("x")); !fault.Is(err, fault.InvalidArgs) {
		t.Fatalf("SignDerived with an AES derivation input: %v, want InvalidArgs", err)
	}
	// Ordinary derivations (module SAS keys) still work.
	if _, err := s.ExportDerived(ctx, "master", []byte("sensor:g1:primary")); err != nil {
		t.Fatalf("ExportDerived of a module derivation: %v", err)
	}
}

func TestEncryptDerivedRefusesMisfits(t *testing.T) {
	ctx := context.Background()
	s := newServiceWithUsageKeys(t)
	d := derivation.Strings("x")
	tests := []struct {
		name, id, mech string
		pt             []byte
		opt            CipherOptions
		kind           fault.Kind
	}{
		{"an encrypt key is not a master", "aes", MechAES256GCM, nil, CipherOptions{}, fault.InvalidArgs},
		{"a sign key is not a master", "hmac", MechAES256GCM, nil, CipherOptions{}, fault.InvalidArgs},
		{"only aes-256-gcm", "master", MechHMACSHA256, nil, CipherOptions{}, fault.InvalidArgs},
		{"iv of 11 bytes", "master", MechAES256GCM, nil, CipherOptions{IV: make([]byte, 11)}, fault.InvalidArgs},
		{"plaintext over 1 MiB", "master", MechAES256GCM, make([]byte, MaxData+1), CipherOptions{}, fault.InvalidArgs},
		{"no such key", "ghost", MechAES256GCM, nil, CipherOptions{}, fault.NotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.EncryptDerived(ctx, tt.id, d, tt.mech, tt.pt, tt.opt); !fault.Is(err, tt.kind) {
				t.Fatalf("EncryptDerived: %v, want %v", err, tt.kind)
			}
		})
	}
	if _, err := s.DecryptDerived(ctx, "master", d, MechAES256GCM, make([]byte, 20), CipherOptions{}); !fault.Is(err, fault.InvalidArgs) {
		t.Fatalf("DecryptDerived of 20 bytes without iv: %v, want InvalidArgs", err)
	}
}
