package tpm_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/labcloud/dps"
	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/internal/tpm"
)

func openSwtpm(t *testing.T, s *testenv.Swtpm) *tpm.TPM {
	t.Helper()
	tp, err := tpm.Open(context.Background(), tpm.Config{Address: s.Addr})
	if err != nil {
		t.Fatalf("open swtpm: %v", err)
	}
	t.Cleanup(func() { tp.Close() })
	return tp
}

// sealFor makes DPS's authenticationKey for the TPM tp, as labcloud does.
func sealFor(t *testing.T, tp *tpm.TPM, key []byte) []byte {
	t.Helper()
	ek, srk, err := tp.AttestationKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	blob, err := dps.SealAuthKey(rand.Reader, &ek.Public, &srk.Public, key)
	if err != nil {
		t.Fatal(err)
	}
	return blob
}

func hmacSHA256(key, data []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(data)
	return m.Sum(nil)
}

func TestImportedDPSKeySignsLikeHMACSHA256AndPersists(t *testing.T) {
	testenv.RequireRoot(t)
	s := testenv.StartSwtpm(t)
	ctx := context.Background()
	tp := openSwtpm(t, s)
	ek, err := tp.ReadEKPublic(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !ek.Persistent() {
		t.Errorf("swtpm's manufactured EK was not found at 0x81010001 (got handle 0x%x)", uint32(ek.Handle))
	}
	if has, err := tp.HasAuthKey(ctx); err != nil || has {
		t.Fatalf("fresh TPM HasAuthKey = %v, %v; want false", has, err)
	}
	if _, err := tp.Sign(ctx, []byte("x")); !fault.Is(err, fault.NotFound) {
		t.Fatalf("Sign before import: %v; want NotFound", err)
	}
	key := bytes.Repeat([]byte{0x5a}, 32)
	if err := tp.ImportAuthKey(ctx, sealFor(t, tp, key)); err != nil {
		t.Fatalf("ImportAuthKey: %v", err)
	}
	for _, n := range []int{1, 60, 1024, 1025, 5000} {
		data := bytes.Repeat([]byte("d"), n)
		got, err := tp.Sign(ctx, data)
		if err != nil {
			t.Fatalf("Sign %d bytes: %v", n, err)
		}
		if !hmac.Equal(got, hmacSHA256(key, data)) {
			t.Fatalf("Sign %d bytes: TPM HMAC differs from HMAC-SHA256 with the sealed key", n)
		}
	}
	// A second import (DPS's assigned result) replaces the key in place.
	key2 := bytes.Repeat([]byte{0x33}, 32)
	if err := tp.ImportAuthKey(ctx, sealFor(t, tp, key2)); err != nil {
		t.Fatalf("re-import: %v", err)
	}
	tp.Close()
	tp2 := openSwtpm(t, s) // a new connection: only the persistent key is left
	got, err := tp2.Sign(ctx, []byte("after reopen"))
	if err != nil {
		t.Fatal(err)
	}
	if !hmac.Equal(got, hmacSHA256(key2, []byte("after reopen"))) {
		t.Fatal("after re-import and reopen the TPM does not sign with the new key")
	}
}

func TestAnotherTPMCannotActivateTheAuthenticationKey(t *testing.T) {
	testenv.RequireRoot(t)
	one, two := openSwtpm(t, testenv.StartSwtpm(t)), openSwtpm(t, testenv.StartSwtpm(t))
	ctx := context.Background()
	ek1, err := one.ReadEKPublic(ctx)
	if err != nil {
		t.Fatal(err)
	}
	srk2, err := two.EnsureSRK(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// DPS seals to the enrolled EK (TPM #1's); TPM #2 sends its own SRK.
	blob, err := dps.SealAuthKey(rand.Reader, &ek1.Public, &srk2.Public, bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	err = two.ImportAuthKey(ctx, blob)
	if !fault.Is(err, fault.NotAuthorized) || !strings.Contains(err.Error(), "not made for this TPM") {
		t.Fatalf("TPM #2 importing a key sealed to TPM #1's EK: %v; want NotAuthorized naming the enrollment", err)
	}
	if _, err := two.EnsureSRK(ctx); err != nil {
		t.Fatalf("TPM #2 after the refused import: %v", err)
	}
	if has, _ := two.HasAuthKey(ctx); has {
		t.Fatal("TPM #2 holds an authentication key after a refused import")
	}
}

func TestRegistrationIDIsLowerBase32OfEKSHA256(t *testing.T) {
	// SHA-256("") base32 = 4OYMIQUY7QOBJGX36TEJS35ZEQT24QPEMSNZGTFESWMRW6CSXBKQ====
	if got, want := tpm.RegistrationID(nil), "4oymiquy7qobjgx36tejs35zeqt24qpemsnzgtfeswmrw6csxbkq"; got != want {
		t.Fatalf("RegistrationID(empty) = %q, want %q", got, want)
	}
}
