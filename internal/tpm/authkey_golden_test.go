package tpm_test

import (
	"bytes"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/edgev2/edgev2/internal/tpm"
)

// goldenAuthKey is an authenticationKey written by hand from the TPM 2.0
// Library, Part 2 (Structures) and the layout the Azure IoT SDKs read
// (authkey.go's comment), not by any codec of this repository: labcloud's
// SealAuthKey and ParseAuthKey share this package's understanding of the
// layout, so a test built only on them cannot catch a mistake both make.
// The opaque parts (encrypted secrets, the wrapped private area) are filler:
// only their TPM2B sizes matter to the parser; what is checked is that each
// field lands where the SDKs put it and the public area decodes as DPS's
// HMAC key. "#" starts a comment; whitespace is ignored.
const goldenAuthKey = `
# TPM2B_ID_OBJECT: size 0x0044 (68) = TPMS_ID_OBJECT
0044
  0020 ` + "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1" + ` # integrityHMAC: TPM2B_DIGEST, 32 bytes (SHA-256)
  0020 ` + "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2" + ` # encIdentity: TPM2B_DIGEST, 32 bytes
# TPM2B_ENCRYPTED_SECRET: 256 bytes (RSA-2048 OAEP to the EK)
0100 {c3*256}
# TPM2B_PRIVATE: 0x0050 (80) = outer integrity (TPM2B_DIGEST, 32) + encrypted sensitive (46)
0050
  0020 ` + "d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4" + `
  {e5*46}
# TPM2B_ENCRYPTED_SECRET: 256 bytes (RSA-2048 OAEP to the SRK)
0100 {f6*256}
# TPM2B_PUBLIC: 0x0030 (48) = TPMT_PUBLIC
0030
  0008         # type: TPM_ALG_KEYEDHASH
  000b         # nameAlg: TPM_ALG_SHA256
  00040040     # objectAttributes: sign (bit 18) | userWithAuth (bit 6)
  0000         # authPolicy: empty TPM2B_DIGEST
  0005         # parameters.keyedHashDetail.scheme: TPM_ALG_HMAC
  000b         #   details.hmac.hashAlg: TPM_ALG_SHA256
  0020 ` + "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20" + ` # unique.keyedHash: TPM2B_DIGEST
# TPM2B_DATA: encrypted URI data, empty as DPS sends it
0000
`

// goldenBytes turns the annotated listing into bytes: hex digits, with
// {xx*n} meaning n bytes of 0xxx.
func goldenBytes(t *testing.T, listing string) []byte {
	t.Helper()
	var hexDigits strings.Builder
	for _, line := range strings.Split(listing, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		for _, word := range strings.Fields(line) {
			if strings.HasPrefix(word, "{") {
				b, count, ok := strings.Cut(strings.Trim(word, "{}"), "*")
				n, err := strconv.Atoi(count)
				if !ok || len(b) != 2 || err != nil {
					t.Fatalf("listing word %q is not {xx*n}", word)
				}
				hexDigits.WriteString(strings.Repeat(b, n))
				continue
			}
			hexDigits.WriteString(word)
		}
	}
	out, err := hex.DecodeString(hexDigits.String())
	if err != nil {
		t.Fatalf("listing: %v", err)
	}
	return out
}

func TestParseAuthKeyReadsAHandWrittenVector(t *testing.T) {
	blob := goldenBytes(t, goldenAuthKey)
	if len(blob) != 2+68+2+256+2+80+2+256+2+48+2 {
		t.Fatalf("the listing is %d bytes; its sizes add up to %d", len(blob), 2+68+2+256+2+80+2+256+2+48+2)
	}
	k, err := tpm.ParseAuthKey(blob)
	if err != nil {
		t.Fatalf("ParseAuthKey(golden): %v", err)
	}
	for _, c := range []struct {
		name      string
		got, want []byte
	}{
		{"credential blob", k.CredentialBlob, blob[2 : 2+68]},
		{"credential secret", k.Secret, bytes.Repeat([]byte{0xc3}, 256)},
		{"duplicate", k.Duplicate, blob[2+68+2+256+2 : 2+68+2+256+2+80]},
		{"wrap seed", k.SymSeed, bytes.Repeat([]byte{0xf6}, 256)},
		{"encrypted URI data", k.EncryptedURI, []byte{}},
	} {
		if !bytes.Equal(c.got, c.want) {
			t.Errorf("%s: got %d bytes %x…, want %d bytes %x…", c.name, len(c.got), head(c.got), len(c.want), head(c.want))
		}
	}
	p := k.Public
	if p.Type != tpm2.TPMAlgKeyedHash || p.NameAlg != tpm2.TPMAlgSHA256 {
		t.Errorf("public area: type 0x%04x nameAlg 0x%04x; want keyed hash, SHA-256", uint16(p.Type), uint16(p.NameAlg))
	}
	if a := p.ObjectAttributes; !a.SignEncrypt || !a.UserWithAuth || a.Decrypt || a.Restricted || a.FixedTPM {
		t.Errorf("object attributes %+v; want sign and userWithAuth only", a)
	}
	kh, err := p.Parameters.KeyedHashDetail()
	if err != nil {
		t.Fatal(err)
	}
	hm, err := kh.Scheme.Details.HMAC()
	if err != nil || kh.Scheme.Scheme != tpm2.TPMAlgHMAC || hm.HashAlg != tpm2.TPMAlgSHA256 {
		t.Errorf("scheme 0x%04x (%v); want HMAC-SHA256", uint16(kh.Scheme.Scheme), err)
	}
	u, err := p.Unique.KeyedHash()
	if err != nil || !bytes.Equal(u.Buffer, blob[len(blob)-2-32:len(blob)-2]) {
		t.Errorf("unique: %x (%v)", u, err)
	}
	if !bytes.Equal(k.Marshal(), blob) {
		t.Error("Marshal(ParseAuthKey(golden)) differs from the listing")
	}

	// The same vector with the attributes of a decryption key (bit 17) or
	// of a restricted one (bit 16): refused, as the import would make a key
	// Sign cannot use.
	for _, tc := range []struct{ name, attrs, want string }{
		{"decrypt key", "00060040", "not an unrestricted signing key"},
		{"restricted key", "00050040", "not an unrestricted signing key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			listing := strings.Replace(goldenAuthKey, "00040040", tc.attrs, 1)
			_, err := tpm.ParseAuthKey(goldenBytes(t, listing))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseAuthKey: %v; want an error saying %q", err, tc.want)
			}
		})
	}
}

func head(b []byte) []byte {
	if len(b) > 8 {
		return b[:8]
	}
	return b
}
