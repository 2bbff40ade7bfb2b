package keys

import (
	"fmt"
	"sort"
	"strings"

	"github.com/miekg/pkcs11"

	"github.com/edgev2/edgev2/internal/fault"
	"github.com/edgev2/edgev2/keys/tokencap"
)

// What a token offers, asked once at start (C_GetMechanismList and
// C_GetMechanismInfo), so keyd refuses to make a key the token could not
// use — p11-kit 0.24 does not forward CKM_AES_GCM, for one — instead of
// making it and failing every later call.

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
		out = append(out, tokencap.Name(m))
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
		info, ok := ms[n.Mech]
		switch {
		case !ok:
			missing = append(missing, tokencap.Name(n.Mech))
		case info.Flags&n.Flags != n.Flags:
			missing = append(missing, fmt.Sprintf("%s for %s", tokencap.Name(n.Mech), n.Ops))
		case n.Mech == pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN && info.MaxKeySize != 0 &&
			(uint(spec.Type.RSABits()) < info.MinKeySize || uint(spec.Type.RSABits()) > info.MaxKeySize):
			missing = append(missing, fmt.Sprintf("%s for %d-bit keys (it makes %d..%d)", tokencap.Name(n.Mech), spec.Type.RSABits(), info.MinKeySize, info.MaxKeySize))
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fault.New(fault.NotSupported, "key %q: PKCS#11 token %q cannot hold a %s key: it does not offer %s", id, token, spec, strings.Join(missing, ", "))
}
