package keys

import (
	"strings"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/edgev2/edgev2/fault"
)

func TestTokenSupportsNamesTheMissingMechanism(t *testing.T) {
	full := p11Mechanisms{
		pkcs11.CKM_EC_KEY_PAIR_GEN:        {Flags: pkcs11.CKF_GENERATE_KEY_PAIR},
		pkcs11.CKM_ECDSA:                  {Flags: pkcs11.CKF_SIGN | pkcs11.CKF_VERIFY},
		pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN:  {Flags: pkcs11.CKF_GENERATE_KEY_PAIR, MinKeySize: 1024, MaxKeySize: 3072},
		pkcs11.CKM_RSA_PKCS:               {Flags: pkcs11.CKF_SIGN | pkcs11.CKF_DECRYPT},
		pkcs11.CKM_GENERIC_SECRET_KEY_GEN: {Flags: pkcs11.CKF_GENERATE},
		pkcs11.CKM_SHA256_HMAC:            {Flags: pkcs11.CKF_SIGN},
		pkcs11.CKM_AES_KEY_GEN:            {Flags: pkcs11.CKF_GENERATE},
	}
	encryptOnly := p11Mechanisms{pkcs11.CKM_AES_GCM: {Flags: pkcs11.CKF_ENCRYPT}}
	for _, c := range []struct {
		name     string
		ms       p11Mechanisms
		spec     Spec
		generate bool
		missing  string // "" = supported
	}{
		{"ec-p256 on a full token", full, Spec{Type: ECP256}, true, ""},
		{"hmac key", full, Spec{Type: Symmetric, Usage: UsageSign}, true, ""},
		{"master key", full, Spec{Type: Symmetric, Usage: UsageDerive}, true, ""},
		{"rsa-2048 within the token's sizes", full, Spec{Type: RSA2048}, true, ""},
		{"rsa-4096 beyond the token's sizes", full, Spec{Type: RSA4096}, true, "4096-bit"},
		{"encrypt key without AES-GCM (p11-kit 0.24)", full, Spec{Type: Symmetric, Usage: UsageEncrypt}, true, "CKM_AES_GCM"},
		{"imported encrypt key without AES-GCM", full, Spec{Type: Symmetric, Usage: UsageEncrypt}, false, "CKM_AES_GCM"},
		{"AES-GCM that cannot decrypt", encryptOnly, Spec{Type: Symmetric, Usage: UsageEncrypt}, false, "CKM_AES_GCM for encrypt and decrypt"},
		{"imported hmac key needs no generator", p11Mechanisms{pkcs11.CKM_SHA256_HMAC: {Flags: pkcs11.CKF_SIGN}}, Spec{Type: Symmetric, Usage: UsageSign}, false, ""},
		{"token that would not say", nil, Spec{Type: Symmetric, Usage: UsageEncrypt}, true, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.ms.supports("tok", "k", c.spec, c.generate)
			if c.missing == "" {
				if err != nil {
					t.Fatalf("supports = %v, want nil", err)
				}
				return
			}
			if !fault.Is(err, fault.NotSupported) || !strings.Contains(err.Error(), c.missing) || !strings.Contains(err.Error(), `"tok"`) {
				t.Fatalf("supports = %v; want NotSupported naming %q and the token", err, c.missing)
			}
		})
	}
}
