package dps

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/google/go-tpm/tpm2"

	"github.com/edgev2/edgev2/internal/tpm"
)

// AuthKeyTemplate is the public area of the HMAC keys the lab DPS issues:
// HMAC-SHA256, unrestricted signing, usable with an empty password, and
// (like any user key) subject to dictionary-attack protection, so a TPM in
// lockout refuses it. Not fixedTPM/fixedParent: it is duplicated into the
// device's TPM.
func authKeyPublic(unique []byte) tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgKeyedHash,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			UserWithAuth: true,
			SignEncrypt:  true,
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
			Scheme: tpm2.TPMTKeyedHashScheme{
				Scheme:  tpm2.TPMAlgHMAC,
				Details: tpm2.NewTPMUSchemeKeyedHash(tpm2.TPMAlgHMAC, &tpm2.TPMSSchemeHMAC{HashAlg: tpm2.TPMAlgSHA256}),
			},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgKeyedHash, &tpm2.TPM2BDigest{Buffer: unique}),
	}
}

// innerKeyBytes is the AES-128 inner wrapper key, as Azure DPS uses.
const innerKeyBytes = 16

// SealAuthKey makes DPS's authenticationKey for a TPM: key (the HMAC
// key) duplicated to the SRK with an inner AES-128-CFB wrapper whose key
// is a credential (TPM 2.0 Part 1, "Credential Protection") that only the
// TPM holding ek can activate, bound to the SRK's name. ek and srk are
// TPMT_PUBLIC areas. The TPM does: ActivateCredential(SRK, EK) → inner
// key; Import(SRK, inner key, public, duplicate, seed); Load.
func SealAuthKey(rnd io.Reader, ek, srk *tpm2.TPMTPublic, key []byte) ([]byte, error) {
	if len(key) == 0 || len(key) > 64 {
		return nil, fmt.Errorf("HMAC key of %d bytes; 1..64 expected", len(key))
	}
	ekKEM, err := tpm2.ImportEncapsulationKey(ek)
	if err != nil {
		return nil, fmt.Errorf("endorsement key: %w", err)
	}
	srkKEM, err := tpm2.ImportEncapsulationKey(srk)
	if err != nil {
		return nil, fmt.Errorf("storage root key: %w", err)
	}
	if !srk.ObjectAttributes.Restricted || !srk.ObjectAttributes.Decrypt {
		return nil, errors.New("storage root key is not a restricted decryption key")
	}
	srkName, err := tpm2.ObjectName(srk)
	if err != nil {
		return nil, fmt.Errorf("storage root key name: %w", err)
	}
	inner := make([]byte, innerKeyBytes)
	if _, err := io.ReadFull(rnd, inner); err != nil {
		return nil, err
	}
	defer clear(inner)
	// The credential: seed RSA-OAEP to the EK with label "IDENTITY\0",
	// KDFa("STORAGE", srkName) AES-CFB of TPM2B(inner), HMAC KDFa("INTEGRITY").
	idObject, encSecret, err := tpm2.CreateCredential(rnd, ekKEM, srkName.Buffer, inner)
	if err != nil {
		return nil, fmt.Errorf("make the credential: %w", err)
	}

	// The key's sensitive area; unique = H(seedValue || key).
	obfuscate := make([]byte, crypto.SHA256.Size())
	if _, err := io.ReadFull(rnd, obfuscate); err != nil {
		return nil, err
	}
	h := crypto.SHA256.New()
	h.Write(obfuscate)
	h.Write(key)
	pub := authKeyPublic(h.Sum(nil))
	name, err := tpm2.ObjectName(&pub)
	if err != nil {
		return nil, err
	}
	sensitive := tpm2.Marshal(tpm2.New2B(tpm2.TPMTSensitive{
		SensitiveType: tpm2.TPMAlgKeyedHash,
		SeedValue:     tpm2.TPM2BDigest{Buffer: obfuscate},
		Sensitive:     tpm2.NewTPMUSensitiveComposite(tpm2.TPMAlgKeyedHash, &tpm2.TPM2BSensitiveData{Buffer: key}),
	}))
	defer clear(sensitive)

	// Inner wrapper (Part 1, "Inner Duplication Wrapper"): integrity =
	// H_nameAlg(TPM2B_SENSITIVE || name); AES-CFB_inner(TPM2B(integrity) || TPM2B_SENSITIVE), IV 0.
	h = crypto.SHA256.New()
	h.Write(sensitive)
	h.Write(name.Buffer)
	plain := append(sized(h.Sum(nil)), sensitive...)
	encSensitive, err := cfb(inner, plain)
	clear(plain)
	if err != nil {
		return nil, err
	}

	// Outer wrapper (Part 1, "Outer Duplication Wrapper"): a seed
	// RSA-OAEP to the SRK with label "DUPLICATE\0"; KDFa("STORAGE", name)
	// AES-CFB; HMAC with KDFa("INTEGRITY") over (dupSensitive || name).
	seed, encSeed, err := srkKEM.Encapsulate(rnd, "DUPLICATE")
	if err != nil {
		return nil, fmt.Errorf("wrap to the storage root key: %w", err)
	}
	defer clear(seed)
	sym := srkKEM.SymmetricParameters()
	bits, err := sym.KeyBits.AES()
	if err != nil || sym.Algorithm != tpm2.TPMAlgAES {
		return nil, errors.New("storage root key's symmetric algorithm is not AES")
	}
	if mode, err := sym.Mode.AES(); err != nil || *mode != tpm2.TPMAlgCFB {
		return nil, errors.New("storage root key's symmetric mode is not CFB")
	}
	parentHash, err := srkKEM.NameAlg().Hash()
	if err != nil {
		return nil, err
	}
	dupSensitive, err := cfb(tpm2.KDFa(parentHash, seed, "STORAGE", name.Buffer, nil, int(*bits)), encSensitive)
	if err != nil {
		return nil, err
	}
	mac := hmac.New(parentHash.New, tpm2.KDFa(parentHash, seed, "INTEGRITY", nil, nil, parentHash.Size()*8))
	mac.Write(dupSensitive)
	mac.Write(name.Buffer)
	duplicate := append(sized(mac.Sum(nil)), dupSensitive...)

	ak := tpm.AuthKey{
		CredentialBlob: idObject,
		Secret:         encSecret,
		Duplicate:      duplicate,
		SymSeed:        encSeed,
		PublicBytes:    tpm2.Marshal(&pub),
	}
	return ak.Marshal(), nil
}

func sized(b []byte) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...)
}

// cfb is AES-CFB with a zero IV: what TPM 2.0 prescribes for both
// duplication wrappers (Part 1, 23.3.2), not a choice of this code.
func cfb(key, plain []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, len(plain))
	cipher.NewCFBEncrypter(block, make([]byte, block.BlockSize())).XORKeyStream(out, plain)
	return out, nil
}

// samePublicKey reports whether two TPM public areas hold the same RSA
// key (type and modulus; the rest of the template may be spelled
// differently, e.g. an enrollment from a PEM key).
func samePublicKey(a, b *tpm2.TPMTPublic) bool {
	if a.Type != tpm2.TPMAlgRSA || b.Type != tpm2.TPMAlgRSA {
		return false
	}
	ra, err1 := a.Unique.RSA()
	rb, err2 := b.Unique.RSA()
	return err1 == nil && err2 == nil && len(ra.Buffer) > 0 && bytes.Equal(ra.Buffer, rb.Buffer)
}
