package workload

import (
	"context"
	"crypto/sha256"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/keys/derivation"
)

// DerivedCipher is the Keys service as workload encryption needs it:
// AES-256-GCM under a key Keys derives from a master key and keeps.
type DerivedCipher interface {
	// EnsureMaster makes the master key (usage derive) if it is missing;
	// fault.AlreadyExists if the id holds another kind of key.
	EnsureMaster(ctx context.Context, masterID string) error
	EncryptDerived(ctx context.Context, masterID string, derivation, plaintext, iv []byte) ([]byte, error)
	DecryptDerived(ctx context.Context, masterID string, derivation, ciphertext, iv []byte) ([]byte, error)
}

// Encryption is the workload API's encrypt and decrypt: AES-256-GCM under
// the module's own key, which Keys derives from MasterKey for (module,
// generation) and never hands out. Another module's key is unrelated
// whatever IV or path a caller sends.
type Encryption struct {
	Keys      DerivedCipher
	MasterKey string // Keys id of the master (workload_encryption_key)
	// Generation is the module's generation id as the Identity service
	// holds it (fault.NotFound: no identity).
	Generation func(ctx context.Context, module string) (string, error)
}

// derivationLabel labels the derivations of workload encryption keys.
const derivationLabel = "edgev2 workload encryption"

// Derivation is the derivation of a module's key: the length-prefixed
// encoding of (label, module id, generation id), so "sensor" with
// generation "-2g" and "sensor-2" with "g" get different keys.
func Derivation(module, generation string) []byte {
	return derivation.Strings(derivationLabel, module, generation)
}

// Encrypt encrypts for module, whose generation id must be genID.
func (e Encryption) Encrypt(ctx context.Context, module, genID string, plaintext, iv []byte) ([]byte, error) {
	d, err := e.moduleKey(ctx, module, genID)
	if err != nil {
		return nil, err
	}
	return e.Keys.EncryptDerived(ctx, e.MasterKey, d, plaintext, gcmNonce(iv))
}

// Decrypt reverses Encrypt; another module's or generation's ciphertext
// does not authenticate (fault.InvalidArgs).
func (e Encryption) Decrypt(ctx context.Context, module, genID string, ciphertext, iv []byte) ([]byte, error) {
	d, err := e.moduleKey(ctx, module, genID)
	if err != nil {
		return nil, err
	}
	return e.Keys.DecryptDerived(ctx, e.MasterKey, d, ciphertext, gcmNonce(iv))
}

// moduleKey checks genID against the module's real generation id, makes
// the master on first use and returns the module key's derivation.
func (e Encryption) moduleKey(ctx context.Context, module, genID string) ([]byte, error) {
	gen, err := e.Generation(ctx, module)
	if fault.Is(err, fault.NotFound) {
		return nil, fault.New(fault.NotAuthorized, "module %s has no identity, so no encryption key", module)
	}
	if err != nil {
		return nil, err
	}
	if gen == "" {
		return nil, fault.New(fault.Unavailable, "module %s has no generation id yet", module)
	}
	if genID != gen {
		return nil, fault.New(fault.NotAuthorized, "generation id %q in the path is not module %s's", genID, module)
	}
	err = e.Keys.EnsureMaster(ctx, e.MasterKey)
	if fault.Is(err, fault.AlreadyExists) {
		return nil, fault.Wrap(fault.Unavailable, err, "workload_encryption_key %q exists but is not a master key (usage derive); configure another id", e.MasterKey)
	}
	if err != nil {
		return nil, err
	}
	return Derivation(module, gen), nil
}

// gcmNonce maps the caller's initialization vector to GCM's 96-bit nonce:
// SDKs send IVs of any length (aziot-keyd hands them to OpenSSL's GCM,
// which hashes other lengths with GHASH); Keys takes exactly 12 bytes, so
// other lengths are hashed here. Equal IVs give equal nonces either way,
// so the caller's IV keeps its meaning — within the module's own key.
func gcmNonce(iv []byte) []byte {
	if len(iv) == 12 {
		return iv
	}
	sum := sha256.Sum256(append([]byte("edgev2 workload iv\x00"), iv...))
	return sum[:12]
}
