// Handles: a key on a token and its primitives (HMAC, ECDSA, RSA PKCS#1 v1.5
// and PSS, RSA-OAEP, AES-GCM), each refinding its object after a recovery.

package keys

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/miekg/pkcs11"

	"github.com/edgev2/edgev2/fault"
)

type pkcs11Handle struct {
	slot    *p11Slot
	info    Info
	keyType uint // CKK_*
	class   uint // CKO_PRIVATE_KEY or CKO_SECRET_KEY
	label   string
	ckaID   []byte

	mu  sync.Mutex
	obj pkcs11.ObjectHandle
	gen uint64 // the module generation obj was found in
}

func (k *pkcs11Handle) Info() Info { return k.info }

// use runs fn with a session and the key's object handle. A handle found
// before the module was re-initialised is never used (it may name another
// object now): the key is found again. If the token says the handle is
// stale (the object was rewritten), it is found again once.
func (k *pkcs11Handle) use(ctx context.Context, fn func(c *pkcs11.Ctx, h pkcs11.SessionHandle, obj pkcs11.ObjectHandle) error) error {
	c := k.slot.mod.ctx
	err := k.slot.withSession(ctx, func(h pkcs11.SessionHandle) error {
		gen := k.slot.mod.gen.Load() // stable: recovery waits for this session
		k.mu.Lock()
		obj, current := k.obj, k.gen == gen
		k.mu.Unlock()
		if !current {
			var err error
			if obj, err = k.find(c, h, gen); err != nil {
				return err
			}
		}
		return fn(c, h, obj)
	})
	if !isCKR(err, pkcs11.CKR_OBJECT_HANDLE_INVALID, pkcs11.CKR_KEY_HANDLE_INVALID) {
		return err
	}
	return k.slot.withSession(ctx, func(h pkcs11.SessionHandle) error {
		obj, err := k.find(c, h, k.slot.mod.gen.Load())
		if err != nil {
			return err
		}
		return fn(c, h, obj)
	})
}

// single runs one single-part operation with k's key: init (SignInit,
// EncryptInit or DecryptInit) with mech, then op on in, on one session.
func (k *pkcs11Handle) single(ctx context.Context, init func(*pkcs11.Ctx, pkcs11.SessionHandle, []*pkcs11.Mechanism, pkcs11.ObjectHandle) error,
	op func(*pkcs11.Ctx, pkcs11.SessionHandle, []byte) ([]byte, error), mech *pkcs11.Mechanism, in []byte) ([]byte, error) {
	var out []byte
	err := k.use(ctx, func(c *pkcs11.Ctx, h pkcs11.SessionHandle, obj pkcs11.ObjectHandle) error {
		if err := init(c, h, []*pkcs11.Mechanism{mech}, obj); err != nil {
			return err
		}
		var err error
		out, err = op(c, h, in)
		return err
	})
	if err != nil {
		return nil, err // out may still be written by a call the watchdog gave up on
	}
	return out, nil
}

// find looks the key up again by label and CKA_ID and caches the handle.
func (k *pkcs11Handle) find(c *pkcs11.Ctx, h pkcs11.SessionHandle, gen uint64) (pkcs11.ObjectHandle, error) {
	obj, class, err := findKey(c, h, k.label, k.ckaID, fmt.Sprintf("%q", k.info.ID))
	if err != nil {
		return 0, err
	}
	if class != k.class {
		return 0, fault.New(fault.NotFound, "key %q was replaced by a different kind of key; open it again", k.info.ID)
	}
	k.mu.Lock()
	k.obj, k.gen = obj, gen
	k.mu.Unlock()
	return obj, nil
}

func (k *pkcs11Handle) wrong(op string) error {
	spec := Spec{Type: k.info.Type, Usage: k.info.Usage}
	return fault.New(fault.InvalidArgs, "key %q is %s; it cannot do %s", k.info.ID, spec, op)
}

// HMACSHA256 implements Handle.
func (k *pkcs11Handle) HMACSHA256(ctx context.Context, data []byte) ([]byte, error) {
	if k.keyType != pkcs11.CKK_GENERIC_SECRET && k.keyType != pkcs11.CKK_SHA256_HMAC {
		return nil, k.wrong("HMAC-SHA256")
	}
	sig, err := k.single(ctx, (*pkcs11.Ctx).SignInit, (*pkcs11.Ctx).Sign, pkcs11.NewMechanism(pkcs11.CKM_SHA256_HMAC, nil), data)
	if err != nil {
		return nil, mapCKR(err, "HMAC-SHA256 with key %q", k.info.ID)
	}
	return sig, nil
}

var digestInfoPrefix = map[crypto.Hash][]byte{
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
	crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
}

var pssHash = map[crypto.Hash][2]uint{
	crypto.SHA256: {pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256},
	crypto.SHA384: {pkcs11.CKM_SHA384, pkcs11.CKG_MGF1_SHA384},
	crypto.SHA512: {pkcs11.CKM_SHA512, pkcs11.CKG_MGF1_SHA512},
}

// SignDigest implements Handle.
func (k *pkcs11Handle) SignDigest(ctx context.Context, digest []byte, hash crypto.Hash, pss bool) ([]byte, error) {
	if hash != 0 && hash.Available() && len(digest) != hash.Size() {
		return nil, fault.New(fault.InvalidArgs, "key %q: a %s digest is %d bytes, not %d", k.info.ID, hash, hash.Size(), len(digest))
	}
	var mech *pkcs11.Mechanism
	input := digest
	switch {
	case k.keyType == pkcs11.CKK_EC:
		if pss {
			return nil, k.wrong("RSA-PSS")
		}
		if len(digest) == 0 || len(digest) > 64 {
			return nil, fault.New(fault.InvalidArgs, "key %q: an ECDSA digest must be 1 to 64 bytes, not %d", k.info.ID, len(digest))
		}
		mech = pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)
	case k.keyType == pkcs11.CKK_RSA && pss:
		p, ok := pssHash[hash]
		if !ok {
			return nil, fault.New(fault.InvalidArgs, "key %q: RSA-PSS supports SHA-256, SHA-384 and SHA-512, not %s", k.info.ID, hash)
		}
		mech = pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_PSS, pkcs11.NewPSSParams(p[0], p[1], uint(hash.Size())))
	case k.keyType == pkcs11.CKK_RSA:
		prefix, ok := digestInfoPrefix[hash]
		if !ok {
			return nil, fault.New(fault.InvalidArgs, "key %q: RSA PKCS#1 v1.5 supports SHA-256, SHA-384 and SHA-512, not %s", k.info.ID, hash)
		}
		input = append(append(make([]byte, 0, len(prefix)+len(digest)), prefix...), digest...)
		mech = pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil)
	default:
		return nil, k.wrong("digest signing")
	}
	sig, err := k.single(ctx, (*pkcs11.Ctx).SignInit, (*pkcs11.Ctx).Sign, mech, input)
	if err != nil {
		return nil, mapCKR(err, "sign with key %q", k.info.ID)
	}
	if k.keyType == pkcs11.CKK_EC {
		return ecdsaDER(sig, k.info.ID)
	}
	return sig, nil
}

// ecdsaDER turns PKCS#11's raw r||s into the ASN.1 DER form Go and X.509 use.
func ecdsaDER(raw []byte, id string) ([]byte, error) {
	if len(raw) == 0 || len(raw)%2 != 0 || len(raw) > 2*1024 {
		return nil, fault.New(fault.Failed, "key %q: the token returned a %d-byte ECDSA signature, not r||s", id, len(raw))
	}
	// SEQUENCE { INTEGER r, INTEGER s }, encoded by hand: encoding/asn1
	// through big.Int cost a few percent of a whole Sign on the hot path.
	half := len(raw) / 2
	r, s := derInteger(raw[:half]), derInteger(raw[half:])
	der := make([]byte, 0, len(raw)+16)
	der = append(der, 0x30)
	der = appendDERLength(der, derIntegerLen(r)+derIntegerLen(s))
	der = appendDERInteger(der, r)
	return appendDERInteger(der, s), nil
}

// derInteger is the content of a DER INTEGER holding the unsigned
// big-endian b: no leading zero bytes but one before a high bit (and one
// for zero).
func derInteger(b []byte) []byte {
	for len(b) > 0 && b[0] == 0 {
		b = b[1:]
	}
	if len(b) == 0 || b[0]&0x80 != 0 {
		return append([]byte{0}, b...)
	}
	return b
}

func derIntegerLen(content []byte) int {
	return 1 + len(appendDERLength(nil, len(content))) + len(content)
}

func appendDERInteger(der, content []byte) []byte {
	der = append(der, 0x02)
	der = appendDERLength(der, len(content))
	return append(der, content...)
}

func appendDERLength(der []byte, n int) []byte {
	switch {
	case n < 0x80:
		return append(der, byte(n))
	case n <= 0xff:
		return append(der, 0x81, byte(n))
	}
	return append(der, 0x82, byte(n>>8), byte(n))
}

// DecryptOAEP implements Handle. Tokens that refuse CKM_RSA_PKCS_OAEP with
// SHA-256 (SoftHSM 2.6 only accepts SHA-1) get a raw CKM_RSA_X_509
// decryption and the OAEP decoding is done here, in constant time.
func (k *pkcs11Handle) DecryptOAEP(ctx context.Context, ciphertext []byte) ([]byte, error) {
	if k.keyType != pkcs11.CKK_RSA {
		return nil, k.wrong("RSA-OAEP decryption")
	}
	pub, _ := k.info.Public.(*rsa.PublicKey)
	if pub == nil || len(ciphertext) != pub.Size() {
		return nil, fault.New(fault.InvalidArgs, "key %q: an RSA-OAEP ciphertext for this key is %d bytes, not %d", k.info.ID, pubSize(pub), len(ciphertext))
	}
	if !k.slot.rawOAEP.Load() {
		params := pkcs11.NewOAEPParams(pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256, pkcs11.CKZ_DATA_SPECIFIED, nil)
		var pt []byte
		var initRefused atomic.Bool // read on error, when a call the watchdog gave up on may still set it
		err := k.use(ctx, func(c *pkcs11.Ctx, h pkcs11.SessionHandle, obj pkcs11.ObjectHandle) error {
			if err := c.DecryptInit(h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_OAEP, params)}, obj); err != nil {
				initRefused.Store(isCKR(err, pkcs11.CKR_ARGUMENTS_BAD, pkcs11.CKR_MECHANISM_PARAM_INVALID, pkcs11.CKR_MECHANISM_INVALID))
				return err
			}
			var err error
			pt, err = c.Decrypt(h, ciphertext)
			return err
		})
		switch {
		case err == nil:
			return pt, nil
		case initRefused.Load():
			k.slot.rawOAEP.Store(true)
			k.slot.log.Info("pkcs11 token refuses CKM_RSA_PKCS_OAEP with SHA-256; decoding OAEP in the daemon over CKM_RSA_X_509", "token", k.slot.label, "reason", ckrName(err))
		case isCKR(err, pkcs11.CKR_ENCRYPTED_DATA_INVALID, pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE):
			return nil, fault.Wrap(fault.InvalidArgs, err, "key %q: RSA-OAEP decryption failed (%s)", k.info.ID, ckrName(err))
		default:
			return nil, mapCKR(err, "RSA-OAEP decrypt with key %q", k.info.ID)
		}
	}
	em, err := k.single(ctx, (*pkcs11.Ctx).DecryptInit, (*pkcs11.Ctx).Decrypt, pkcs11.NewMechanism(pkcs11.CKM_RSA_X_509, nil), ciphertext)
	if err != nil {
		if isCKR(err, pkcs11.CKR_ENCRYPTED_DATA_INVALID, pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE) {
			return nil, fault.Wrap(fault.InvalidArgs, err, "key %q: RSA-OAEP decryption failed (%s)", k.info.ID, ckrName(err))
		}
		return nil, mapCKR(err, "RSA-OAEP decrypt (raw RSA) with key %q", k.info.ID)
	}
	pt, ok := oaepDecodeSHA256(em, pub.Size())
	if !ok {
		return nil, fault.New(fault.InvalidArgs, "key %q: RSA-OAEP decryption failed", k.info.ID)
	}
	return pt, nil
}

func pubSize(pub *rsa.PublicKey) int {
	if pub == nil {
		return 0
	}
	return pub.Size()
}

// oaepDecodeSHA256 is EME-OAEP decoding (RFC 8017 7.1.2) with SHA-256,
// MGF1-SHA-256 and an empty label. It runs in time independent of where the
// encoding is wrong, so it is no padding oracle.
func oaepDecodeSHA256(raw []byte, k int) ([]byte, bool) {
	const hLen = sha256.Size
	if len(raw) > k || k < 2*hLen+2 {
		return nil, false
	}
	em := make([]byte, k)
	copy(em[k-len(raw):], raw)
	lHash := sha256.Sum256(nil)

	firstByteIsZero := subtle.ConstantTimeByteEq(em[0], 0)
	seed, db := em[1:hLen+1], em[hLen+1:]
	mgf1XORSHA256(seed, db)
	mgf1XORSHA256(db, seed)
	lHashGood := subtle.ConstantTimeCompare(lHash[:], db[:hLen])

	// db = lHash' || PS (zeros) || 0x01 || M
	rest := db[hLen:]
	lookingForIndex, index, invalid := 1, 0, 0
	for i := range rest {
		equals0 := subtle.ConstantTimeByteEq(rest[i], 0)
		equals1 := subtle.ConstantTimeByteEq(rest[i], 1)
		index = subtle.ConstantTimeSelect(lookingForIndex&equals1, i, index)
		lookingForIndex = subtle.ConstantTimeSelect(equals1, 0, lookingForIndex)
		invalid = subtle.ConstantTimeSelect(lookingForIndex&^equals0, 1, invalid)
	}
	if firstByteIsZero&lHashGood&^invalid&^lookingForIndex != 1 {
		return nil, false
	}
	return append([]byte{}, rest[index+1:]...), true
}

// mgf1XORSHA256 XORs out with MGF1-SHA-256(seed).
func mgf1XORSHA256(out, seed []byte) {
	var counter [4]byte
	done := 0
	for done < len(out) {
		h := sha256.New()
		h.Write(seed)
		h.Write(counter[:])
		mask := h.Sum(nil)
		for i := 0; i < len(mask) && done < len(out); i++ {
			out[done] ^= mask[i]
			done++
		}
		for i := 3; i >= 0; i-- {
			counter[i]++
			if counter[i] != 0 {
				break
			}
		}
	}
}

const gcmTagSize = 16

// SealGCM implements Handle.
func (k *pkcs11Handle) SealGCM(ctx context.Context, iv, aad, plaintext []byte) ([]byte, error) {
	if err := k.checkGCM(iv); err != nil {
		return nil, err
	}
	params := pkcs11.NewGCMParams(iv, aad, gcmTagSize*8)
	defer params.Free()
	ct, err := k.single(ctx, (*pkcs11.Ctx).EncryptInit, (*pkcs11.Ctx).Encrypt, pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params), plaintext)
	if err != nil {
		return nil, mapCKR(err, "AES-GCM encrypt with key %q", k.info.ID)
	}
	return ct, nil
}

// OpenGCM implements Handle.
func (k *pkcs11Handle) OpenGCM(ctx context.Context, iv, aad, ciphertext []byte) ([]byte, error) {
	if err := k.checkGCM(iv); err != nil {
		return nil, err
	}
	if len(ciphertext) < gcmTagSize {
		return nil, fault.New(fault.InvalidArgs, "key %q: AES-GCM ciphertext is %d bytes, shorter than its 16-byte tag", k.info.ID, len(ciphertext))
	}
	params := pkcs11.NewGCMParams(iv, aad, gcmTagSize*8)
	defer params.Free()
	pt, err := k.single(ctx, (*pkcs11.Ctx).DecryptInit, (*pkcs11.Ctx).Decrypt, pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params), ciphertext)
	if err != nil {
		if isCKR(err, pkcs11.CKR_ENCRYPTED_DATA_INVALID, pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE, pkcs11.CKR_GENERAL_ERROR, pkcs11.CKR_FUNCTION_FAILED) {
			// SoftHSM reports a tag mismatch as CKR_GENERAL_ERROR.
			return nil, fault.Wrap(fault.InvalidArgs, err, "key %q: AES-GCM authentication failed (%s)", k.info.ID, ckrName(err))
		}
		return nil, mapCKR(err, "AES-GCM decrypt with key %q", k.info.ID)
	}
	if pt == nil {
		pt = []byte{}
	}
	return pt, nil
}

func (k *pkcs11Handle) checkGCM(iv []byte) error {
	if k.keyType != pkcs11.CKK_AES {
		return k.wrong("AES-GCM")
	}
	if len(iv) != 12 {
		return fault.New(fault.InvalidArgs, "key %q: the AES-GCM iv must be 12 bytes, not %d", k.info.ID, len(iv))
	}
	return nil
}
