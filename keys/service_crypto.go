// The key operations of Service: sign, verify, encrypt, decrypt, and the
// ones under keys derived from a master key (keys/derivation).

package keys

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"

	"github.com/edgev2/edgev2/fault"
	keyderivation "github.com/edgev2/edgev2/keys/derivation"
)

func checkData(what string, data []byte) error {
	if len(data) > MaxData {
		return fault.New(fault.InvalidArgs, "%s is %d bytes; the limit is %d (1 MiB)", what, len(data), MaxData)
	}
	return nil
}

// keyFor is the common start of every key operation: the payload is within
// the limit, the key exists, and mech is a mechanism of kind op that fits it.
func (s *Service) keyFor(ctx context.Context, id, mech string, op opKind, what string, data []byte) (Handle, Info, error) {
	if err := checkData(what, data); err != nil {
		return nil, Info{}, err
	}
	h, err := s.handle(ctx, id)
	if err != nil {
		return nil, Info{}, err
	}
	info := h.Info()
	if err := checkMechanism(info, mech, op); err != nil {
		return nil, Info{}, err
	}
	return h, info, nil
}

// Sign signs data with key id using mech.
func (s *Service) Sign(ctx context.Context, id, mech string, data []byte) ([]byte, error) {
	h, _, err := s.keyFor(ctx, id, mech, opSign, "data", data)
	if err != nil {
		return nil, err
	}
	if mech == MechHMACSHA256 {
		return h.HMACSHA256(ctx, data)
	}
	digest, hash, err := digestFor(mech, data)
	if err != nil {
		return nil, err
	}
	return h.SignDigest(ctx, digest, hash, mech == MechRSAPSSSHA256 || mech == MechRSAPSS)
}

// Verify checks a signature; a malformed signature is false, not an error.
func (s *Service) Verify(ctx context.Context, id, mech string, data, sig []byte) (bool, error) {
	h, info, err := s.keyFor(ctx, id, mech, opSign, "data", data)
	if err != nil {
		return false, err
	}
	if mech == MechHMACSHA256 {
		mac, err := h.HMACSHA256(ctx, data)
		if err != nil {
			return false, err
		}
		return hmac.Equal(mac, sig), nil
	}
	digest, hash, err := digestFor(mech, data)
	if err != nil {
		return false, err
	}
	switch pub := info.Public.(type) {
	case *ecdsa.PublicKey:
		return ecdsa.VerifyASN1(pub, digest, sig), nil
	case *rsa.PublicKey:
		if mech == MechRSAPSSSHA256 || mech == MechRSAPSS {
			return rsa.VerifyPSS(pub, hash, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto}) == nil, nil
		}
		return rsa.VerifyPKCS1v15(pub, hash, digest, sig) == nil, nil
	}
	return false, fault.New(fault.Failed, "key %q has no public key", id)
}

// CipherOptions are the options of Encrypt and Decrypt.
type CipherOptions struct {
	IV  []byte // aes-256-gcm; nil = random, carried in front of the ciphertext
	AAD []byte
}

const gcmIVLen, gcmTagLen = 12, 16

// checkOAEP refuses the options rsa-oaep-sha256 has no use for.
func (o CipherOptions) checkOAEP() error {
	if o.IV != nil || o.AAD != nil {
		return fault.New(fault.InvalidArgs, "options \"iv\" and \"aad\" are for aes-256-gcm, not rsa-oaep-sha256")
	}
	return nil
}

// Encrypt encrypts with key id using mech.
func (s *Service) Encrypt(ctx context.Context, id, mech string, plaintext []byte, opt CipherOptions) ([]byte, error) {
	h, info, err := s.keyFor(ctx, id, mech, opEncrypt, "plaintext", plaintext)
	if err != nil {
		return nil, err
	}
	if mech == MechRSAOAEPSHA256 {
		if err := opt.checkOAEP(); err != nil {
			return nil, err
		}
		pub := info.Public.(*rsa.PublicKey)
		if max := pub.Size() - 2*sha256.Size - 2; len(plaintext) > max {
			return nil, fault.New(fault.InvalidArgs, "rsa-oaep-sha256 with key %q takes at most %d bytes of plaintext, got %d", id, max, len(plaintext))
		}
		return rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, plaintext, nil)
	}
	return gcmSeal(opt, plaintext, func(iv, aad, pt []byte) ([]byte, error) { return h.SealGCM(ctx, iv, aad, pt) })
}

// gcmSeal is AES-256-GCM encryption with Encrypt's iv rules: a given iv is
// 12 bytes and the result is ciphertext || tag; without one a random iv is
// made and put in front.
func gcmSeal(opt CipherOptions, plaintext []byte, seal func(iv, aad, pt []byte) ([]byte, error)) ([]byte, error) {
	iv := opt.IV
	if iv == nil {
		iv = make([]byte, gcmIVLen)
		if _, err := rand.Read(iv); err != nil {
			return nil, err
		}
		ct, err := seal(iv, opt.AAD, plaintext)
		if err != nil {
			return nil, err
		}
		return append(iv, ct...), nil
	}
	if len(iv) != gcmIVLen {
		return nil, fault.New(fault.InvalidArgs, "option \"iv\" must be %d bytes for aes-256-gcm, got %d", gcmIVLen, len(iv))
	}
	return seal(iv, opt.AAD, plaintext)
}

// Decrypt decrypts what Encrypt made.
func (s *Service) Decrypt(ctx context.Context, id, mech string, ciphertext []byte, opt CipherOptions) ([]byte, error) {
	h, info, err := s.keyFor(ctx, id, mech, opEncrypt, "ciphertext", ciphertext)
	if err != nil {
		return nil, err
	}
	if mech == MechRSAOAEPSHA256 {
		if err := opt.checkOAEP(); err != nil {
			return nil, err
		}
		if len(ciphertext) != info.Public.(*rsa.PublicKey).Size() {
			return nil, fault.New(fault.InvalidArgs, "rsa-oaep-sha256 ciphertext for key %q must be %d bytes, got %d", id, info.Public.(*rsa.PublicKey).Size(), len(ciphertext))
		}
		return h.DecryptOAEP(ctx, ciphertext)
	}
	return gcmOpen(opt, ciphertext, func(iv, aad, ct []byte) ([]byte, error) { return h.OpenGCM(ctx, iv, aad, ct) })
}

// gcmOpen reverses gcmSeal.
func gcmOpen(opt CipherOptions, ciphertext []byte, open func(iv, aad, ct []byte) ([]byte, error)) ([]byte, error) {
	iv := opt.IV
	if iv == nil {
		if len(ciphertext) < gcmIVLen+gcmTagLen {
			return nil, fault.New(fault.InvalidArgs, "aes-256-gcm ciphertext without option \"iv\" must start with the 12-byte iv and end with the 16-byte tag; got only %d bytes", len(ciphertext))
		}
		iv, ciphertext = ciphertext[:gcmIVLen], ciphertext[gcmIVLen:]
	} else if len(iv) != gcmIVLen {
		return nil, fault.New(fault.InvalidArgs, "option \"iv\" must be %d bytes for aes-256-gcm, got %d", gcmIVLen, len(iv))
	}
	if len(ciphertext) < gcmTagLen {
		return nil, fault.New(fault.InvalidArgs, "aes-256-gcm ciphertext must hold at least the 16-byte tag; got %d bytes", len(ciphertext))
	}
	return open(iv, opt.AAD, ciphertext)
}

// ExportDerived returns HMAC-SHA256(master, derivation): the key a module
// SAS key is made from.
func (s *Service) ExportDerived(ctx context.Context, id string, derivation []byte) ([]byte, error) {
	if err := checkData("derivation", derivation); err != nil {
		return nil, err
	}
	if bytes.HasPrefix(derivation, derivedAESPrefix) {
		return nil, fault.New(fault.InvalidArgs, "derivation data starting with the encoding of %q is reserved for EncryptDerived and DecryptDerived", derivedAESLabel)
	}
	h, err := s.master(ctx, id)
	if err != nil {
		return nil, err
	}
	return h.HMACSHA256(ctx, derivation)
}

// master opens key id and checks it is a master key (usage derive).
func (s *Service) master(ctx context.Context, id string) (Handle, error) {
	h, err := s.handle(ctx, id)
	if err != nil {
		return nil, err
	}
	info := h.Info()
	if info.Type != Symmetric || info.Usage != UsageDerive {
		return nil, fault.New(fault.InvalidArgs, "key %q of type %s cannot derive keys; a master key is a symmetric key created with usage \"derive\"", id, describe(info))
	}
	return h, nil
}

// SignDerived signs data with the key derived from master key id.
func (s *Service) SignDerived(ctx context.Context, id string, derivation []byte, mech string, data []byte) ([]byte, error) {
	if mech != MechHMACSHA256 {
		return nil, fault.New(fault.InvalidArgs, "derived keys sign with \"hmac-sha256\" only, not %q", mech)
	}
	if err := checkData("data", data); err != nil {
		return nil, err
	}
	derived, err := s.ExportDerived(ctx, id, derivation)
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, derived)
	m.Write(data)
	clear(derived)
	return m.Sum(nil), nil
}

// derivedAESLabel separates the AES keys of EncryptDerived from the HMAC
// keys of SignDerived and ExportDerived: an AES key is
// HMAC-SHA256(master, Encode(derivedAESLabel, derivation)), and
// SignDerived/ExportDerived refuse derivation data that starts like that
// encoding, so holders of org.edgev2.keys.use or .export on a master cannot
// compute or obtain the AES keys made from it through them.
const derivedAESLabel = "edgev2 derived aes-256-gcm key"

// derivedAESPrefix is how every AES derivation input starts (field count,
// then the label as the first field).
var derivedAESPrefix = keyderivation.Encode([]byte(derivedAESLabel), nil)[:4+4+len(derivedAESLabel)]

// derivedAEAD derives the AES-256-GCM key for derivation from master key id
// inside this process: on a PKCS#11 token the HMAC runs in the token, and
// the derived bytes live only in this call's memory.
func (s *Service) derivedAEAD(ctx context.Context, id, mech string, derivation []byte) (cipher.AEAD, error) {
	if mech != MechAES256GCM {
		return nil, fault.New(fault.InvalidArgs, "derived keys encrypt with \"aes-256-gcm\" only, not %q", mech)
	}
	if err := checkData("derivation", derivation); err != nil {
		return nil, err
	}
	h, err := s.master(ctx, id)
	if err != nil {
		return nil, err
	}
	key, err := h.HMACSHA256(ctx, keyderivation.Encode([]byte(derivedAESLabel), derivation))
	if err != nil {
		return nil, err
	}
	defer clear(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fault.Wrap(fault.Failed, err, "derive an AES key from %q", id)
	}
	return cipher.NewGCM(block)
}

// EncryptDerived is Encrypt (aes-256-gcm, same options) with the AES key
// derived from master key id for derivation.
func (s *Service) EncryptDerived(ctx context.Context, id string, derivation []byte, mech string, plaintext []byte, opt CipherOptions) ([]byte, error) {
	if err := checkData("plaintext", plaintext); err != nil {
		return nil, err
	}
	aead, err := s.derivedAEAD(ctx, id, mech, derivation)
	if err != nil {
		return nil, err
	}
	return gcmSeal(opt, plaintext, func(iv, aad, pt []byte) ([]byte, error) { return aead.Seal(nil, iv, pt, aad), nil })
}

// DecryptDerived reverses EncryptDerived.
func (s *Service) DecryptDerived(ctx context.Context, id string, derivation []byte, mech string, ciphertext []byte, opt CipherOptions) ([]byte, error) {
	if err := checkData("ciphertext", ciphertext); err != nil {
		return nil, err
	}
	aead, err := s.derivedAEAD(ctx, id, mech, derivation)
	if err != nil {
		return nil, err
	}
	return gcmOpen(opt, ciphertext, func(iv, aad, ct []byte) ([]byte, error) {
		pt, err := aead.Open(nil, iv, ct, aad)
		if err != nil {
			return nil, fault.New(fault.InvalidArgs, "key derived from %q: AES-256-GCM authentication failed (wrong derivation, iv, aad or tampered ciphertext)", id)
		}
		return pt, nil
	})
}
