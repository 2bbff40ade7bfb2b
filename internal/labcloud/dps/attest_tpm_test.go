package dps

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// softEK is an EK public area (TCG default template) with a software key.
func softEK(t testing.TB) (*tpm2.TPMTPublic, *rsa.PrivateKey) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub := tpm2.RSAEKTemplate
	pub.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: k.N.FillBytes(make([]byte, 256))})
	return &pub, k
}

func TestParseEndorsementKeyForms(t *testing.T) {
	ek, k := softEK(t)
	twoB := tpm2.Marshal(tpm2.New2B(*ek))
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	pemText := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	ecKey := tpm2.RSAEKTemplate
	ecKey.Type = tpm2.TPMAlgECC
	signer := *ek
	signer.ObjectAttributes.SignEncrypt, signer.ObjectAttributes.Decrypt = true, false
	for _, tc := range []struct {
		name, in, want string // want "" = same key as ek
	}{
		{"base64 TPM2B_PUBLIC", base64.StdEncoding.EncodeToString(twoB), ""},
		{"binary TPM2B_PUBLIC", string(twoB), ""},
		{"base64 with a newline", base64.StdEncoding.EncodeToString(twoB) + "\n", ""},
		{"PEM public key", string(pemText), ""},
		{"TPMT_PUBLIC without the size", base64.StdEncoding.EncodeToString(twoB[2:]), "size prefix"},
		{"trailing bytes", base64.StdEncoding.EncodeToString(append(append([]byte(nil), twoB...), 0)), "size prefix"},
		{"signing key", base64.StdEncoding.EncodeToString(tpm2.Marshal(tpm2.New2B(signer))), "not a restricted decryption key"},
		{"garbage", "hello", "not a TPM2B_PUBLIC"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseEndorsementKey([]byte(tc.in))
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err %v; want %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !samePublicKey(got, ek) {
				t.Fatal("parsed EK is another key")
			}
		})
	}
}

func TestTPMEnrollmentConfigMistakesNameTheKey(t *testing.T) {
	ek, _ := softEK(t)
	b64 := base64.StdEncoding.EncodeToString(tpm2.Marshal(tpm2.New2B(*ek)))
	for _, tc := range []struct {
		name string
		e    Enrollment
		key  string // "" = valid
	}{
		{"valid", Enrollment{RegistrationID: "tpm-1", Attestation: AttestationTPM, EndorsementKey: b64}, ""},
		{"group", Enrollment{GroupID: "g", Attestation: AttestationTPM, EndorsementKey: b64}, "enrollments[0].group_id"},
		{"no EK", Enrollment{RegistrationID: "tpm-1", Attestation: AttestationTPM}, "enrollments[0].endorsement_key"},
		{"both EK forms", Enrollment{RegistrationID: "tpm-1", Attestation: AttestationTPM, EndorsementKey: b64, EndorsementKeyFile: "/x"}, "enrollments[0].endorsement_key"},
		{"bad EK", Enrollment{RegistrationID: "tpm-1", Attestation: AttestationTPM, EndorsementKey: "AAAA"}, "enrollments[0].endorsement_key"},
		{"with a key", Enrollment{RegistrationID: "tpm-1", Attestation: AttestationTPM, EndorsementKey: b64, PrimaryKey: "AAAA"}, "enrollments[0]"},
		{"EK on a symmetric enrollment", Enrollment{RegistrationID: "s", Attestation: AttestationSymmetricKey, PrimaryKey: "c2VjcmV0LWtleS0wMTIzNDU2", EndorsementKey: b64}, "enrollments[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Config{Enrollments: []Enrollment{tc.e}}.Validate()
			var ce *ConfigError
			if tc.key == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.As(err, &ce) || ce.Key != tc.key {
				t.Fatalf("err %v; want one naming %s", err, tc.key)
			}
		})
	}
}

func TestSealAuthKeyRefusesKeysItCannotWrapTo(t *testing.T) {
	ek, _ := softEK(t)
	notStorage := *ek
	notStorage.ObjectAttributes.Restricted = false
	if _, err := SealAuthKey(rand.Reader, ek, &notStorage, make([]byte, 32)); err == nil {
		t.Fatal("sealed to an unrestricted SRK")
	}
	if _, err := SealAuthKey(rand.Reader, ek, ek, nil); err == nil {
		t.Fatal("sealed an empty key")
	}
}

func FuzzParseEndorsementKey(f *testing.F) {
	ek, _ := softEK(f)
	twoB := tpm2.Marshal(tpm2.New2B(*ek))
	f.Add(twoB)
	f.Add([]byte(base64.StdEncoding.EncodeToString(twoB)))
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		pub, err := parseEndorsementKey(b)
		if err != nil {
			return
		}
		if _, err := tpm2.ImportEncapsulationKey(pub); err != nil {
			t.Fatalf("accepted an EK that cannot encapsulate: %v", err)
		}
	})
}
