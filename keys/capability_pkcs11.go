package keys

import (
	"fmt"
	"sort"
	"strings"

	"github.com/miekg/pkcs11"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/keys/tokencap"
)

// What a token offers, asked once at start (C_GetMechanismList and
// C_GetMechanismInfo), so keyd refuses to make a key the token could not
// use — p11-kit 0.24 does not forward CKM_AES_GCM, for one — instead of
// making it and failing every later call.

// ckmNames names the mechanisms keyd uses and the common ones a token
// lists; others are shown as "CKM 0x...".
var ckmNames = map[uint]string{
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

// ckmName names mechanism m as TokenMechanisms does.
func ckmName(m uint) string {
	if n, ok := ckmNames[m]; ok {
		return n
	}
	return fmt.Sprintf("CKM 0x%X", m)
}

// ckmByName is ckmNames the other way round.
var ckmByName = func() map[string]uint {
	m := map[string]uint{}
	for n, s := range ckmNames {
		m[s] = n
	}
	return m
}()

// opFlags are the CKF_* flags each tokencap.Op stands for.
var opFlags = map[tokencap.Op]uint{
	tokencap.OpGenerateKeyPair: pkcs11.CKF_GENERATE_KEY_PAIR,
	tokencap.OpGenerate:        pkcs11.CKF_GENERATE,
	tokencap.OpSign:            pkcs11.CKF_SIGN,
	tokencap.OpEncryptDecrypt:  pkcs11.CKF_ENCRYPT | pkcs11.CKF_DECRYPT,
}

// p11Mechanisms is what one token offers; nil means the token would not say,
// and keyd then lets the token refuse at use.
type p11Mechanisms map[uint]pkcs11.MechanismInfo

func queryMechanisms(c *pkcs11.Ctx, slot uint) (p11Mechanisms, error) {
	list, err := c.GetMechanismList(slot)
	if err != nil {
		return nil, err
	}
	out := p11Mechanisms{}
	for _, m := range list {
		info, err := c.GetMechanismInfo(slot, []*pkcs11.Mechanism{m})
		if err != nil {
			continue
		}
		out[m.Mechanism] = info
	}
	return out, nil
}

// names lists the mechanisms by name, sorted.
func (ms p11Mechanisms) names() []string {
	out := make([]string, 0, len(ms))
	for m := range ms {
		out = append(out, ckmName(m))
	}
	sort.Strings(out)
	return out
}

// supports says whether a token offering ms can make (or import) and use a
// key of spec; the error is fault.NotSupported and names what is missing.
func (ms p11Mechanisms) supports(token, id string, spec Spec, generate bool) error {
	if ms == nil {
		return nil
	}
	var missing []string
	for _, n := range tokencap.Needs(string(spec.Type), string(spec.Usage), generate) {
		num, known := ckmByName[n.Mech]
		info, ok := ms[num]
		ok = ok && known
		flags := opFlags[n.Op]
		switch {
		case !ok:
			missing = append(missing, n.Mech)
		case info.Flags&flags != flags:
			missing = append(missing, fmt.Sprintf("%s for %s", n.Mech, n.Op))
		case n.Mech == tokencap.RSAKeyPairGen && info.MaxKeySize != 0 &&
			(uint(spec.Type.RSABits()) < info.MinKeySize || uint(spec.Type.RSABits()) > info.MaxKeySize):
			missing = append(missing, fmt.Sprintf("%s for %d-bit keys (it makes %d..%d)", n.Mech, spec.Type.RSABits(), info.MinKeySize, info.MaxKeySize))
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fault.New(fault.NotSupported, "key %q: PKCS#11 token %q cannot hold a %s key: it does not offer %s", id, token, spec, strings.Join(missing, ", "))
}
