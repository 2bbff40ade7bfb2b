package tpm_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/edgev2/edgev2/internal/labcloud/dps"
	"github.com/edgev2/edgev2/internal/tpm"
)

// softPublic is a TPM public area from a template and a software RSA key.
func softPublic(t testing.TB, tmpl tpm2.TPMTPublic) *tpm2.TPMTPublic {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: k.N.Bytes()})
	return &tmpl
}

func softBlob(t testing.TB) []byte {
	t.Helper()
	blob, err := dps.SealAuthKey(rand.Reader, softPublic(t, tpm2.RSAEKTemplate), softPublic(t, tpm2.RSASRKTemplate), bytes.Repeat([]byte{4}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return blob
}

func TestParseAuthKeyReadsTheSDKLayout(t *testing.T) {
	blob := softBlob(t)
	k, err := tpm.ParseAuthKey(blob)
	if err != nil {
		t.Fatalf("ParseAuthKey(SealAuthKey(...)): %v", err)
	}
	if len(k.Secret) != 256 || len(k.SymSeed) != 256 {
		t.Errorf("RSA-2048 secrets are %d and %d bytes, want 256", len(k.Secret), len(k.SymSeed))
	}
	if k.Public.Type != tpm2.TPMAlgKeyedHash {
		t.Errorf("public type 0x%x", k.Public.Type)
	}
	if !bytes.Equal(k.Marshal(), blob) {
		t.Error("Marshal(ParseAuthKey(b)) != b")
	}
	// Without the optional trailing TPM2B_DATA (as some SDK versions send).
	if _, err := tpm.ParseAuthKey(blob[:len(blob)-2]); err != nil {
		t.Errorf("blob without the encrypted URI data: %v", err)
	}
}

func TestParseAuthKeyRefusesMalformedBlobs(t *testing.T) {
	blob := softBlob(t)
	field := func(n int) int { // offset of the n-th TPM2B
		off := 0
		for i := 0; i < n; i++ {
			off += 2 + int(binary.BigEndian.Uint16(blob[off:]))
		}
		return off
	}
	mutate := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), blob...)) }
	hmacPublic := field(4)
	for _, tc := range []struct {
		name, want string
		blob       []byte
	}{
		{"empty", "ends before its credential blob", nil},
		{"one byte", "ends before", []byte{0}},
		{"size past the end", "claims", []byte{0xff, 0xff, 1, 2}},
		{"empty credential", "credential blob (TPM2B_ID_OBJECT) is empty", mutate(func(b []byte) []byte { return append([]byte{0, 0}, b[field(1):]...) })},
		{"truncated in the public area", "key public area", blob[:hmacPublic+10]},
		{"URI data size past the end", "encrypted URI data", append(append([]byte(nil), blob[:len(blob)-2]...), 0, 9)},
		{"public area of an RSA key", "authentication key's public area", mutate(func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[hmacPublic+2:], uint16(tpm2.TPMAlgRSA))
			return b
		})},
		{"too large", "at most", make([]byte, 9000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tpm.ParseAuthKey(tc.blob)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseAuthKey: %v; want an error saying %q", err, tc.want)
			}
		})
	}
}

func FuzzParseAuthKey(f *testing.F) {
	blob := softBlob(f)
	f.Add(blob)
	f.Add(blob[:len(blob)-2])
	f.Add([]byte{0, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := tpm.ParseAuthKey(b)
		if err != nil {
			return
		}
		again, err := tpm.ParseAuthKey(k.Marshal())
		if err != nil {
			t.Fatalf("re-parse of Marshal: %v", err)
		}
		if !bytes.Equal(again.Marshal(), k.Marshal()) {
			t.Fatal("Marshal is not stable")
		}
	})
}
