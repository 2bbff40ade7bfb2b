// Key objects on a token: finding them, and making, importing, opening and
// describing keys (Generate, Import, Open).

package keys

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"

	"github.com/miekg/pkcs11"

	"github.com/edgev2/edgev2/fault"
)

func findObjects(ctx *pkcs11.Ctx, h pkcs11.SessionHandle, tmpl []*pkcs11.Attribute) ([]pkcs11.ObjectHandle, error) {
	if err := ctx.FindObjectsInit(h, tmpl); err != nil {
		return nil, err
	}
	var all []pkcs11.ObjectHandle
	for {
		objs, _, err := ctx.FindObjects(h, 64)
		if err != nil {
			ctx.FindObjectsFinal(h)
			return nil, err
		}
		all = append(all, objs...)
		if len(objs) == 0 {
			break
		}
	}
	return all, ctx.FindObjectsFinal(h)
}

// keyTemplate selects objects by class, label and CKA_ID; empty parts are left out.
func keyTemplate(class uint, label string, id []byte) []*pkcs11.Attribute {
	t := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, class)}
	if label != "" {
		t = append(t, pkcs11.NewAttribute(pkcs11.CKA_LABEL, label))
	}
	if len(id) > 0 {
		t = append(t, pkcs11.NewAttribute(pkcs11.CKA_ID, id))
	}
	return t
}

// findKey finds the one private or secret key matching label/id.
func findKey(ctx *pkcs11.Ctx, h pkcs11.SessionHandle, label string, id []byte, what string) (pkcs11.ObjectHandle, uint, error) {
	for _, class := range []uint{pkcs11.CKO_PRIVATE_KEY, pkcs11.CKO_SECRET_KEY} {
		objs, err := findObjects(ctx, h, keyTemplate(class, label, id))
		if err != nil {
			return 0, 0, err
		}
		switch len(objs) {
		case 0:
			continue
		case 1:
			return objs[0], class, nil
		default:
			return 0, 0, fault.New(fault.InvalidArgs, "key %s: the token holds %d keys that match; give each a distinct label", what, len(objs))
		}
	}
	return 0, 0, fault.New(fault.NotFound, "key %s not found on the PKCS#11 token", what)
}

// labelled returns every object (any class) with the label.
func labelled(ctx *pkcs11.Ctx, h pkcs11.SessionHandle, label string) ([]pkcs11.ObjectHandle, error) {
	return findObjects(ctx, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, label)})
}

func attrUint(b []byte) uint {
	// CK_ULONG in host byte order, as the module wrote it.
	var v uint64
	switch len(b) {
	case 8:
		v = uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
			uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
	case 4:
		v = uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24
	}
	return uint(v)
}

// ---------------------------------------------------------------------------
// Engine operations.

var (
	oidP256 = []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}
	oidP384 = []byte{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22}
)

// secretAttrs are the attributes every private or secret key keyd makes
// carries: on the token, private, never leaving it, labelled id.
func secretAttrs(id string, ckaID []byte) []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, id),
		pkcs11.NewAttribute(pkcs11.CKA_ID, ckaID),
	}
}

func newCKAID() ([]byte, error) {
	id := make([]byte, 16)
	_, err := rand.Read(id)
	return id, err
}

// Generate implements Engine.
func (e *PKCS11Engine) Generate(ctx context.Context, id string, spec Spec) (Handle, error) {
	slot, err := e.needBase()
	if err != nil {
		return nil, err
	}
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	if err := slot.mechanisms().supports(slot.label, id, spec, true); err != nil {
		return nil, err
	}
	ckaID, err := newCKAID()
	if err != nil {
		return nil, fault.Wrap(fault.Failed, err, "generate key %q: random CKA_ID: %v", id, err)
	}
	priv := secretAttrs(id, ckaID)
	pub := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, id),
		pkcs11.NewAttribute(pkcs11.CKA_ID, ckaID),
	}
	var mech uint
	pair := true
	switch {
	case spec.Type.IsEC():
		mech = pkcs11.CKM_EC_KEY_PAIR_GEN
		oid := oidP256
		if spec.Type == ECP384 {
			oid = oidP384
		}
		pub = append(pub, pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC),
			pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, oid), pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true))
		priv = append(priv, pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC), pkcs11.NewAttribute(pkcs11.CKA_SIGN, true))
	case spec.Type.IsRSA():
		mech = pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN
		pub = append(pub, pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, spec.Type.RSABits()),
			pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}),
			pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true), pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true))
		priv = append(priv, pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, true), pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true))
	case spec.Type == Symmetric:
		pair = false
		ktype, usageAttrs, err := symmetricTemplate(id, spec.Usage)
		if err != nil {
			return nil, err
		}
		mech = pkcs11.CKM_GENERIC_SECRET_KEY_GEN
		if ktype == pkcs11.CKK_AES {
			mech = pkcs11.CKM_AES_KEY_GEN
		}
		priv = append(priv, pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, ktype), pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32))
		priv = append(priv, usageAttrs...)
	default:
		return nil, fault.New(fault.InvalidArgs, "key %q: the pkcs11 engine cannot make key type %q", id, spec.Type)
	}

	err = e.createFree(ctx, slot, id, func(h pkcs11.SessionHandle) error {
		m := []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}
		if pair {
			_, _, err := slot.mod.ctx.GenerateKeyPair(h, m, pub, priv)
			return err
		}
		_, err := slot.mod.ctx.GenerateKey(h, m, priv)
		return err
	})
	if err != nil {
		if isCKR(err, pkcs11.CKR_MECHANISM_INVALID, pkcs11.CKR_MECHANISM_PARAM_INVALID, pkcs11.CKR_TEMPLATE_INCONSISTENT,
			pkcs11.CKR_ATTRIBUTE_VALUE_INVALID, pkcs11.CKR_KEY_SIZE_RANGE, pkcs11.CKR_DOMAIN_PARAMS_INVALID, pkcs11.CKR_CURVE_NOT_SUPPORTED) {
			return nil, fault.Wrap(fault.NotSupported, err, "key %q: PKCS#11 token %q cannot make key type %s (%s)", id, slot.label, spec, ckrName(err))
		}
		return nil, mapCKR(err, "generate key %q (%s) on PKCS#11 token %q", id, spec, slot.label)
	}
	e.log.Info("pkcs11 key generated", "key", id, "type", spec.String(), "token", slot.label)
	return e.Open(ctx, id)
}

// symmetricTemplate picks the key type and permitted operations for a
// symmetric usage. An empty usage means a sign (HMAC) key.
func symmetricTemplate(id string, usage Usage) (uint, []*pkcs11.Attribute, error) {
	switch usage {
	case UsageSign, "", UsageDerive:
		// CKA_DERIVE marks master keys, so Open can tell them from sign keys.
		return pkcs11.CKK_GENERIC_SECRET, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_DERIVE, usage == UsageDerive),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, true), pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false), pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
			pkcs11.NewAttribute(pkcs11.CKA_WRAP, false), pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
		}, nil
	case UsageEncrypt:
		return pkcs11.CKK_AES, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true), pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, false), pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false),
			pkcs11.NewAttribute(pkcs11.CKA_WRAP, false), pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
		}, nil
	}
	return 0, nil, fault.New(fault.InvalidArgs, "key %q: unknown symmetric key usage %q (want sign, encrypt or derive)", id, usage)
}

func checkFree(ctx *pkcs11.Ctx, h pkcs11.SessionHandle, id string) error {
	objs, err := labelled(ctx, h, id)
	if err != nil {
		return err
	}
	if len(objs) > 0 {
		return fault.New(fault.AlreadyExists, "key %q already exists", id)
	}
	return nil
}

// Import implements Engine: it stores a symmetric key value on the token as
// a sensitive, non-extractable object.
func (e *PKCS11Engine) Import(ctx context.Context, id string, spec Spec, value []byte) (Handle, error) {
	slot, err := e.needBase()
	if err != nil {
		return nil, err
	}
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	if spec.Type != Symmetric {
		return nil, fault.New(fault.InvalidArgs, "key %q: only symmetric keys can be imported, not %q", id, spec.Type)
	}
	ktype, usageAttrs, err := symmetricTemplate(id, spec.Usage)
	if err != nil {
		return nil, err
	}
	if err := slot.mechanisms().supports(slot.label, id, spec, false); err != nil {
		return nil, err
	}
	switch {
	case ktype == pkcs11.CKK_AES && len(value) != 32:
		return nil, fault.New(fault.InvalidArgs, "key %q: an encrypt key must be 32 bytes (AES-256), not %d", id, len(value))
	case ktype == pkcs11.CKK_GENERIC_SECRET && (len(value) < 16 || len(value) > 128):
		return nil, fault.New(fault.InvalidArgs, "key %q: a sign key must be 16 to 128 bytes, not %d", id, len(value))
	}
	ckaID, err := newCKAID()
	if err != nil {
		return nil, fault.Wrap(fault.Failed, err, "import key %q: random CKA_ID: %v", id, err)
	}
	tmpl := append([]*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, ktype),
	}, secretAttrs(id, ckaID)...)
	tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_VALUE, value))
	tmpl = append(tmpl, usageAttrs...)

	err = e.createFree(ctx, slot, id, func(h pkcs11.SessionHandle) error {
		_, err := slot.mod.ctx.CreateObject(h, tmpl)
		return err
	})
	if err != nil {
		return nil, mapCKR(err, "import key %q on PKCS#11 token %q", id, slot.label)
	}
	e.log.Info("pkcs11 key imported", "key", id, "type", spec.String(), "token", slot.label)
	return e.Open(ctx, id)
}

// Open implements Engine: it finds the private or secret key labelled id.
func (e *PKCS11Engine) Open(ctx context.Context, id string) (Handle, error) {
	slot, err := e.needBase()
	if err != nil {
		return nil, err
	}
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	return openKey(ctx, slot, id, id, nil, false)
}

// openKey finds a key by label and/or CKA_ID and reads its public description.
func openKey(ctx context.Context, slot *p11Slot, keyID, label string, ckaID []byte, preloaded bool) (*pkcs11Handle, error) {
	what := fmt.Sprintf("%q", keyID)
	k := &pkcs11Handle{slot: slot, label: label, ckaID: ckaID}
	err := slot.withSession(ctx, func(h pkcs11.SessionHandle) error {
		obj, class, err := findKey(slot.mod.ctx, h, label, ckaID, what)
		if err != nil {
			return err
		}
		k.obj, k.class, k.gen = obj, class, slot.mod.gen.Load()
		info, ktype, err := describeKey(slot.mod.ctx, h, obj, class, keyID)
		if err != nil {
			return err
		}
		k.keyType = ktype
		info.Location = slot.location(label, ckaID)
		info.Preloaded = preloaded
		k.info = info
		return nil
	})
	if err != nil {
		return nil, mapCKR(err, "open key %s on PKCS#11 token %q", what, slot.label)
	}
	return k, nil
}

// describeKey reads the type and public key of a private or secret key object.
func describeKey(ctx *pkcs11.Ctx, h pkcs11.SessionHandle, obj pkcs11.ObjectHandle, class uint, keyID string) (Info, uint, error) {
	info := Info{ID: keyID}
	attrs, err := ctx.GetAttributeValue(h, obj, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_ID, nil),
	})
	if err != nil {
		return info, 0, err
	}
	ktype, ckaID := attrUint(attrs[0].Value), attrs[1].Value
	if class == pkcs11.CKO_SECRET_KEY {
		info.Type = Symmetric
		switch ktype {
		case pkcs11.CKK_GENERIC_SECRET, pkcs11.CKK_SHA256_HMAC:
			// tpm2-pkcs11 makes its HMAC keys (tpm2_ptool addkey
			// --algorithm hmac:sha256) CKK_SHA256_HMAC.
			info.Usage = UsageSign
			if d, err := ctx.GetAttributeValue(h, obj, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_DERIVE, nil)}); err == nil && len(d) == 1 && len(d[0].Value) == 1 && d[0].Value[0] == 1 {
				info.Usage = UsageDerive
			}
		case pkcs11.CKK_AES:
			info.Usage = UsageEncrypt
		default:
			return info, 0, fault.New(fault.InvalidArgs, "key %q is a secret key of PKCS#11 type 0x%x; only generic secret (HMAC) and AES keys are supported", keyID, ktype)
		}
		return info, ktype, nil
	}
	// The public key object shares CKA_ID with the private key.
	pubObj := pkcs11.ObjectHandle(0)
	if len(ckaID) > 0 {
		if objs, err := findObjects(ctx, h, keyTemplate(pkcs11.CKO_PUBLIC_KEY, "", ckaID)); err == nil && len(objs) > 0 {
			pubObj = objs[0]
		}
	}
	switch ktype {
	case pkcs11.CKK_EC:
		a, err := ctx.GetAttributeValue(h, obj, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, nil)})
		if err != nil {
			return info, 0, err
		}
		var curve elliptic.Curve
		switch {
		case bytes.Equal(a[0].Value, oidP256):
			info.Type, curve = ECP256, elliptic.P256()
		case bytes.Equal(a[0].Value, oidP384):
			info.Type, curve = ECP384, elliptic.P384()
		default:
			return info, 0, fault.New(fault.InvalidArgs, "key %q is on an EC curve edgev2 does not support (parameters %x); use P-256 or P-384", keyID, a[0].Value)
		}
		if pubObj == 0 {
			return info, 0, fault.New(fault.InvalidArgs, "key %q has no public key object with the same CKA_ID on the token", keyID)
		}
		p, err := ctx.GetAttributeValue(h, pubObj, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil)})
		if err != nil {
			return info, 0, err
		}
		pub, err := parseECPoint(curve, p[0].Value)
		if err != nil {
			return info, 0, fault.Wrap(fault.InvalidArgs, err, "key %q: the token's CKA_EC_POINT is not a valid point: %v", keyID, err)
		}
		info.Public = pub
	case pkcs11.CKK_RSA:
		tmpl := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_MODULUS, nil), pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, nil)}
		a, err := ctx.GetAttributeValue(h, obj, tmpl)
		if (err != nil || len(a[0].Value) == 0) && pubObj != 0 {
			a, err = ctx.GetAttributeValue(h, pubObj, tmpl)
		}
		if err != nil {
			return info, 0, err
		}
		n := new(big.Int).SetBytes(a[0].Value)
		exp := new(big.Int).SetBytes(a[1].Value)
		if !exp.IsInt64() || exp.Int64() < 3 || exp.Int64() > 1<<31-1 {
			return info, 0, fault.New(fault.InvalidArgs, "key %q has an unsupported RSA public exponent", keyID)
		}
		switch n.BitLen() {
		case 2048:
			info.Type = RSA2048
		case 3072:
			info.Type = RSA3072
		case 4096:
			info.Type = RSA4096
		default:
			return info, 0, fault.New(fault.InvalidArgs, "key %q is RSA-%d; edgev2 supports RSA-2048, 3072 and 4096", keyID, n.BitLen())
		}
		info.Public = &rsa.PublicKey{N: n, E: int(exp.Int64())}
	default:
		return info, 0, fault.New(fault.InvalidArgs, "key %q is a private key of PKCS#11 type 0x%x; only EC and RSA are supported", keyID, ktype)
	}
	return info, ktype, nil
}

// parseECPoint accepts CKA_EC_POINT as the DER OCTET STRING PKCS#11 asks
// for, or as the raw uncompressed point some tokens return.
func parseECPoint(curve elliptic.Curve, b []byte) (*ecdsa.PublicKey, error) {
	size := (curve.Params().BitSize + 7) / 8
	raw := b
	if !(len(b) == 1+2*size && b[0] == 4) {
		var inner []byte
		rest, err := asn1.Unmarshal(b, &inner)
		if err != nil || len(rest) != 0 {
			return nil, errors.New("neither a DER OCTET STRING nor an uncompressed point")
		}
		raw = inner
	}
	return ecdsa.ParseUncompressedPublicKey(curve, raw)
}

// createFree runs create on a session of slot, with the token's writes
// held and only while no object is labelled id there yet.
func (e *PKCS11Engine) createFree(ctx context.Context, slot *p11Slot, id string, create func(pkcs11.SessionHandle) error) error {
	if err := e.lockWrites(ctx, slot); err != nil {
		return err
	}
	defer e.unlockWrites()
	return slot.withSession(ctx, func(h pkcs11.SessionHandle) error {
		if err := checkFree(slot.mod.ctx, h, id); err != nil {
			return err
		}
		return create(h)
	})
}
