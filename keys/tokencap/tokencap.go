// Package tokencap says what keyd needs of a PKCS#11 token for each kind of
// key, by the mechanism names the TokenMechanisms property gives, so edgectl
// can judge a token without linking the Keys service or a PKCS#11 binding.
package tokencap

import (
	"strings"

	"github.com/edgev2/edgev2/keys/api"
)

// Mechanism names (CKM_*) keyd needs.
const (
	ECKeyPairGen     = "CKM_EC_KEY_PAIR_GEN"
	ECDSA            = "CKM_ECDSA"
	RSAKeyPairGen    = "CKM_RSA_PKCS_KEY_PAIR_GEN"
	RSAPKCS          = "CKM_RSA_PKCS"
	AESKeyGen        = "CKM_AES_KEY_GEN"
	AESGCM           = "CKM_AES_GCM"
	GenericSecretGen = "CKM_GENERIC_SECRET_KEY_GEN"
	SHA256HMAC       = "CKM_SHA256_HMAC"
)

// Op is what a mechanism must allow (a CKF_* flag, or two).
type Op string

const (
	OpGenerateKeyPair Op = "generate key pair"
	OpGenerate        Op = "generate"
	OpSign            Op = "sign"
	OpEncryptDecrypt  Op = "encrypt and decrypt"
)

// Need is one mechanism a kind of key needs, with the operations it must
// allow.
type Need struct {
	Mech string // CKM_* name
	Op   Op
}

// Needs lists what a key of type typ (and usage, for a symmetric key) needs
// from its token: the generation mechanism (unless it is imported) and the
// mechanism its first use takes.
func Needs(typ, usage string, generate bool) []Need {
	var gen, use []Need
	switch {
	case typ == api.TypeECP256 || typ == api.TypeECP384:
		gen = []Need{{ECKeyPairGen, OpGenerateKeyPair}}
		use = []Need{{ECDSA, OpSign}}
	case typ == api.TypeRSA2048 || typ == api.TypeRSA3072 || typ == api.TypeRSA4096:
		gen = []Need{{RSAKeyPairGen, OpGenerateKeyPair}}
		use = []Need{{RSAPKCS, OpSign}}
	case typ == api.TypeSymmetric && usage == api.UsageEncrypt:
		gen = []Need{{AESKeyGen, OpGenerate}}
		use = []Need{{AESGCM, OpEncryptDecrypt}}
	case typ == api.TypeSymmetric:
		gen = []Need{{GenericSecretGen, OpGenerate}}
		use = []Need{{SHA256HMAC, OpSign}}
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
			if !have[n.Mech] {
				missing = append(missing, n.Mech)
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
