// Package tokencap says what keyd needs of a PKCS#11 token for each kind of
// key, and names mechanisms as the TokenMechanisms property does, so
// edgectl can judge a token without linking the Keys service.
package tokencap

import (
	"fmt"
	"strings"

	"github.com/miekg/pkcs11"

	"github.com/edgev2/edgev2/keys/api"
)

// names names the mechanisms keyd uses and the common ones a token
// lists; others are shown as "CKM 0x...".
var names = map[uint]string{
	pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN: "CKM_RSA_PKCS_KEY_PAIR_GEN", pkcs11.CKM_RSA_PKCS: "CKM_RSA_PKCS",
	pkcs11.CKM_RSA_X_509: "CKM_RSA_X_509", pkcs11.CKM_RSA_PKCS_OAEP: "CKM_RSA_PKCS_OAEP",
	pkcs11.CKM_RSA_PKCS_PSS: "CKM_RSA_PKCS_PSS", pkcs11.CKM_SHA256_RSA_PKCS: "CKM_SHA256_RSA_PKCS",
	pkcs11.CKM_SHA256_RSA_PKCS_PSS: "CKM_SHA256_RSA_PKCS_PSS",
	pkcs11.CKM_EC_KEY_PAIR_GEN:     "CKM_EC_KEY_PAIR_GEN", pkcs11.CKM_ECDSA: "CKM_ECDSA",
	pkcs11.CKM_ECDSA_SHA256: "CKM_ECDSA_SHA256", pkcs11.CKM_ECDH1_DERIVE: "CKM_ECDH1_DERIVE",
	pkcs11.CKM_GENERIC_SECRET_KEY_GEN: "CKM_GENERIC_SECRET_KEY_GEN", pkcs11.CKM_SHA256_HMAC: "CKM_SHA256_HMAC",
	pkcs11.CKM_SHA384_HMAC: "CKM_SHA384_HMAC", pkcs11.CKM_SHA512_HMAC: "CKM_SHA512_HMAC", pkcs11.CKM_SHA_1_HMAC: "CKM_SHA_1_HMAC",
	pkcs11.CKM_SHA256: "CKM_SHA256", pkcs11.CKM_SHA384: "CKM_SHA384", pkcs11.CKM_SHA512: "CKM_SHA512", pkcs11.CKM_SHA_1: "CKM_SHA_1",
	pkcs11.CKM_AES_KEY_GEN: "CKM_AES_KEY_GEN", pkcs11.CKM_AES_GCM: "CKM_AES_GCM", pkcs11.CKM_AES_ECB: "CKM_AES_ECB",
	pkcs11.CKM_AES_CBC: "CKM_AES_CBC", pkcs11.CKM_AES_CBC_PAD: "CKM_AES_CBC_PAD", pkcs11.CKM_AES_CTR: "CKM_AES_CTR",
	pkcs11.CKM_AES_CMAC: "CKM_AES_CMAC", pkcs11.CKM_AES_KEY_WRAP: "CKM_AES_KEY_WRAP",
}

// Name names mechanism m as TokenMechanisms does.
func Name(m uint) string {
	if n, ok := names[m]; ok {
		return n
	}
	return fmt.Sprintf("CKM 0x%X", m)
}

// Need is one mechanism a kind of key needs, with the operations
// (CKF_* flags) it must allow.
type Need struct {
	Mech  uint
	Flags uint
	Ops   string // the operations, in words
}

// Needs lists what a key of type typ (and usage, for a symmetric key) needs from its token: the generation
// mechanism (unless it is imported) and the mechanism its first use takes.
func Needs(typ, usage string, generate bool) []Need {
	var gen, use []Need
	switch {
	case typ == api.TypeECP256 || typ == api.TypeECP384:
		gen = []Need{{pkcs11.CKM_EC_KEY_PAIR_GEN, pkcs11.CKF_GENERATE_KEY_PAIR, "generate key pair"}}
		use = []Need{{pkcs11.CKM_ECDSA, pkcs11.CKF_SIGN, "sign"}}
	case typ == api.TypeRSA2048 || typ == api.TypeRSA3072 || typ == api.TypeRSA4096:
		gen = []Need{{pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, pkcs11.CKF_GENERATE_KEY_PAIR, "generate key pair"}}
		use = []Need{{pkcs11.CKM_RSA_PKCS, pkcs11.CKF_SIGN, "sign"}}
	case typ == api.TypeSymmetric && usage == api.UsageEncrypt:
		gen = []Need{{pkcs11.CKM_AES_KEY_GEN, pkcs11.CKF_GENERATE, "generate"}}
		use = []Need{{pkcs11.CKM_AES_GCM, pkcs11.CKF_ENCRYPT | pkcs11.CKF_DECRYPT, "encrypt and decrypt"}}
	case typ == api.TypeSymmetric:
		gen = []Need{{pkcs11.CKM_GENERIC_SECRET_KEY_GEN, pkcs11.CKF_GENERATE, "generate"}}
		use = []Need{{pkcs11.CKM_SHA256_HMAC, pkcs11.CKF_SIGN, "sign"}}
	}
	if !generate {
		return use
	}
	return append(gen, use...)
}

// CannotHold lists, for a token offering the named mechanisms (as the
// TokenMechanisms property gives them), each kind of key it cannot hold and
// the mechanisms it lacks for it ("symmetric/encrypt: CKM_AES_GCM").
func CannotHold(mechanisms []string) []string {
	have := map[string]bool{}
	for _, m := range mechanisms {
		have[m] = true
	}
	var out []string
	for _, kind := range [][2]string{{api.TypeECP256}, {api.TypeECP384}, {api.TypeRSA2048},
		{api.TypeSymmetric, api.UsageSign}, {api.TypeSymmetric, api.UsageDerive}, {api.TypeSymmetric, api.UsageEncrypt}} {
		var missing []string
		for _, n := range Needs(kind[0], kind[1], true) {
			if !have[Name(n.Mech)] {
				missing = append(missing, Name(n.Mech))
			}
		}
		if len(missing) > 0 {
			name := kind[0]
			if kind[1] != "" {
				name += "/" + kind[1]
			}
			out = append(out, name+": "+strings.Join(missing, ", "))
		}
	}
	return out
}
