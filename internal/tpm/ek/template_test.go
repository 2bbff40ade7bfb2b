package ek

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

func TestParseTemplateTable(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Template
		bad  bool
	}{
		{"", Auto, false},
		{"auto", Auto, false},
		{"tcg", TCG, false},
		{" TCG ", TCG, false},
		{"azure-sdk", AzureSDK, false},
		{"azure", "", true},
		{"tss.js", "", true},
	} {
		got, err := ParseTemplate(tc.in)
		if tc.bad {
			if err == nil || !strings.Contains(err.Error(), "azure-sdk") {
				t.Errorf("ParseTemplate(%q) = %v, %v; want an error naming the choices", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseTemplate(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

// The TCG template is go-tpm's reference RSA EK template byte for byte;
// the Azure SDK one differs from it only in an empty unique field.
func TestTemplatesAreTheTCGOneAndItsEmptyUniqueVariant(t *testing.T) {
	tcg := tpm2.Marshal(TCG.Public())
	if !bytes.Equal(tcg, tpm2.Marshal(tpm2.RSAEKTemplate)) {
		t.Fatal("the TCG template is not the TCG EK Credential Profile's L-1")
	}
	az := tpm2.Marshal(AzureSDK.Public())
	// TPM2B_PUBLIC_KEY_RSA at the end: size 256 + 256 zero bytes vs size 0.
	if !bytes.Equal(az[:len(az)-2], tcg[:len(tcg)-258]) || !bytes.Equal(az[len(az)-2:], []byte{0, 0}) {
		t.Fatalf("the azure-sdk template differs from TCG's in more than the unique field:\n%x\n%x", az, tcg)
	}
}

func TestRegistrationIDIsLowerBase32OfSHA256WithoutPadding(t *testing.T) {
	// SHA-256("") = e3b0c442...; base32 of it, lower case, no '='.
	if got := RegistrationID(nil); got != "4oymiquy7qobjgx36tejs35zeqt24qpemsnzgtfeswmrw6csxbkq" {
		t.Fatalf("RegistrationID(empty) = %s", got)
	}
}

func FuzzCertPublicKey(f *testing.F) {
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x00})
	f.Add([]byte{0x30, 0x82, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, der []byte) {
		k, err := CertPublicKey(der)
		if err == nil && k == nil {
			t.Fatal("no key and no error")
		}
	})
}
