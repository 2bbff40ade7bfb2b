// Package keys is the domain of the Keys service: key types, mechanisms and
// the engines (file store, PKCS#11 token) that hold private keys.
package keys

import (
	"context"
	"crypto"
	"fmt"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/keys/api"
	"github.com/edgev2/edgev2/keys/config"
)

// Type is the algorithm and size of a key.
type Type string

const (
	Symmetric Type = api.TypeSymmetric
	ECP256    Type = api.TypeECP256
	ECP384    Type = api.TypeECP384
	RSA2048   Type = api.TypeRSA2048
	RSA3072   Type = api.TypeRSA3072
	RSA4096   Type = api.TypeRSA4096
)

// PairTypes are the asymmetric types, in the order "*" tries them.
var PairTypes = []Type{ECP256, ECP384, RSA2048, RSA3072, RSA4096}

// IsEC reports whether t is an elliptic-curve type.
func (t Type) IsEC() bool { return t == ECP256 || t == ECP384 }

// IsRSA reports whether t is an RSA type.
func (t Type) IsRSA() bool { return t == RSA2048 || t == RSA3072 || t == RSA4096 }

// RSABits returns the modulus size of an RSA type, 0 otherwise.
func (t Type) RSABits() int {
	switch t {
	case RSA2048:
		return 2048
	case RSA3072:
		return 3072
	case RSA4096:
		return 4096
	}
	return 0
}

// Usage says what a symmetric key is for. PKCS#11 tokens keep HMAC keys
// (CKK_GENERIC_SECRET) and AES keys apart, so every engine does.
type Usage string

const (
	UsageSign    Usage = api.UsageSign    // HMAC-SHA256 (Sign, Verify)
	UsageEncrypt Usage = api.UsageEncrypt // AES-256-GCM
	// UsageDerive is a master key: it only makes derived keys (SignDerived,
	// ExportDerived, EncryptDerived, DecryptDerived). It refuses plain Sign, or a caller allowed only
	// org.edgev2.keys.use could compute HMAC(master, d) — the derived key that
	// org.edgev2.keys.export guards.
	UsageDerive Usage = api.UsageDerive
)

// Spec says what kind of key to make.
type Spec struct {
	Type  Type
	Usage Usage // symmetric keys only
}

// Info is the public description of a stored key.
type Info struct {
	ID        string
	Type      Type
	Usage     Usage            // symmetric keys only
	Public    crypto.PublicKey // *ecdsa.PublicKey or *rsa.PublicKey; nil for symmetric keys
	PublicDER []byte           // Public as DER SubjectPublicKeyInfo, when the engine has it at hand
	Location  string           // file path or PKCS#11 URI, never with a PIN
	Preloaded bool             // managed by configuration; cannot be deleted or moved
}

// Engine stores keys and performs the private-key primitives on them.
// Implementations are safe for concurrent use.
type Engine interface {
	// Name is "file" or "pkcs11".
	Name() string
	// Generate makes a new key; fault.AlreadyExists if id is taken,
	// fault.InvalidArgs if the engine cannot make spec.Type.
	Generate(ctx context.Context, id string, spec Spec) (Handle, error)
	// Import stores a symmetric key value (spec.Type == Symmetric).
	Import(ctx context.Context, id string, spec Spec, value []byte) (Handle, error)
	// Open finds a stored key; fault.NotFound if there is none.
	Open(ctx context.Context, id string) (Handle, error)
	// Delete removes a key; fault.NotFound if there is none.
	Delete(ctx context.Context, id string) error
	// Move renames a key, replacing any key already stored under to.
	Move(ctx context.Context, from, to string) error
	// List returns the ids of all stored keys.
	List(ctx context.Context) ([]string, error)
	Close() error
}

// Handle is an opened key. Callers check Info before calling a primitive
// that does not fit the key; handles still refuse with fault.InvalidArgs.
type Handle interface {
	Info() Info
	// HMACSHA256 signs data with a symmetric sign key.
	HMACSHA256(ctx context.Context, data []byte) ([]byte, error)
	// SignDigest signs a digest made with hash: ECDSA (ASN.1 DER signature),
	// RSA PKCS#1 v1.5 (DigestInfo added here) or RSA-PSS (salt = hash length).
	SignDigest(ctx context.Context, digest []byte, hash crypto.Hash, pss bool) ([]byte, error)
	// DecryptOAEP decrypts RSA-OAEP with SHA-256 and MGF1-SHA-256.
	DecryptOAEP(ctx context.Context, ciphertext []byte) ([]byte, error)
	// SealGCM and OpenGCM are AES-256-GCM with a 16-byte tag appended.
	SealGCM(ctx context.Context, iv, aad, plaintext []byte) ([]byte, error)
	OpenGCM(ctx context.Context, iv, aad, ciphertext []byte) ([]byte, error)
}

// ValidateID checks a caller-supplied key id (config.ValidateID: the
// configuration names key ids too).
func ValidateID(id string) error { return config.ValidateID(id) }

// ParseType parses a key type name.
func ParseType(s string) (Type, error) {
	switch t := Type(s); t {
	case Symmetric, ECP256, ECP384, RSA2048, RSA3072, RSA4096:
		return t, nil
	}
	return "", fault.New(fault.InvalidArgs, "unknown key type %q (want one of symmetric, ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096)", s)
}

func (s Spec) String() string {
	if s.Type == Symmetric {
		return fmt.Sprintf("symmetric/%s", s.Usage)
	}
	return string(s.Type)
}

// Preloaded presents h under the id it has in [preloaded_keys], marked
// read-only, whatever label it carries in its store.
func Preloaded(id string, h Handle) Handle { return preloadedHandle{Handle: h, id: id} }

type preloadedHandle struct {
	Handle
	id string
}

func (p preloadedHandle) Info() Info {
	info := p.Handle.Info()
	info.ID = p.id
	info.Preloaded = true
	return info
}
