package workload

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"testing"

	"github.com/edgev2/edgev2/fault"
)

// fakeKeys derives like keyd (HMAC of the master over the derivation) and
// records what it was asked, so tests see which key a request used.
type fakeKeys struct {
	master     []byte
	wrongUsage bool
	derived    [][]byte
}

func (f *fakeKeys) EnsureMaster(context.Context, string) error {
	if f.wrongUsage {
		return fault.New(fault.AlreadyExists, "key exists as symmetric/encrypt")
	}
	return nil
}
func (f *fakeKeys) aead(d []byte) cipher.AEAD {
	f.derived = append(f.derived, d)
	m := hmac.New(sha256.New, f.master)
	m.Write(d)
	b, _ := aes.NewCipher(m.Sum(nil))
	a, _ := cipher.NewGCM(b)
	return a
}
func (f *fakeKeys) EncryptDerived(_ context.Context, _ string, d, pt, iv []byte) ([]byte, error) {
	return f.aead(d).Seal(nil, iv, pt, nil), nil
}
func (f *fakeKeys) DecryptDerived(_ context.Context, _ string, d, ct, iv []byte) ([]byte, error) {
	pt, err := f.aead(d).Open(nil, iv, ct, nil)
	if err != nil {
		return nil, fault.New(fault.InvalidArgs, "authentication failed")
	}
	return pt, nil
}

func generations(m map[string]string) func(context.Context, string) (string, error) {
	return func(_ context.Context, module string) (string, error) {
		g, ok := m[module]
		if !ok {
			return "", fault.New(fault.NotFound, "no module identity %s", module)
		}
		return g, nil
	}
}

func TestEncryptionRefusesAGenerationNotTheModules(t *testing.T) {
	ctx := context.Background()
	keys := &fakeKeys{master: bytes.Repeat([]byte{3}, 32)}
	e := Encryption{Keys: keys, MasterKey: "m", Generation: generations(map[string]string{"sensor": "g1", "sensor-2": "g1", "fresh": ""})}
	tests := []struct {
		name, module, gen string
		kind              fault.Kind
	}{
		{"another generation", "sensor", "g2", fault.NotAuthorized},
		{"a generation that completes another module's name", "sensor", "-2g1", fault.NotAuthorized},
		{"empty generation", "sensor", "", fault.NotAuthorized},
		{"a module without identity", "ghost", "g1", fault.NotAuthorized},
		{"a module without generation yet", "fresh", "", fault.Unavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := e.Encrypt(ctx, tt.module, tt.gen, []byte("x"), []byte("iv")); !fault.Is(err, tt.kind) {
				t.Fatalf("Encrypt(%s, %q): %v; want %v", tt.module, tt.gen, err, tt.kind)
			}
			if _, err := e.Decrypt(ctx, tt.module, tt.gen, make([]byte, 32), []byte("iv")); !fault.Is(err, tt.kind) {
				t.Fatalf("Decrypt(%s, %q): %v; want %v", tt.module, tt.gen, err, tt.kind)
			}
		})
	}
	if len(keys.derived) != 0 {
		t.Fatalf("refused requests reached Keys with derivations %x", keys.derived)
	}
	bad := Encryption{Keys: &fakeKeys{wrongUsage: true}, MasterKey: "m", Generation: generations(map[string]string{"sensor": "g1"})}
	if _, err := bad.Encrypt(ctx, "sensor", "g1", []byte("x"), []byte("iv")); !fault.Is(err, fault.Unavailable) {
		t.Fatalf("Encrypt with a master of the wrong usage: %v; want Unavailable (a configuration problem, not the module's)", err)
	}
}

func TestEncryptionUsesAKeyPerModuleAndGeneration(t *testing.T) {
	ctx := context.Background()
	keys := &fakeKeys{master: bytes.Repeat([]byte{3}, 32)}
	e := Encryption{Keys: keys, MasterKey: "m", Generation: generations(map[string]string{"sensor": "-2g1", "sensor-2": "g1"})}
	iv := []byte("0123456789") // 10 bytes, as SDK samples send
	ct, err := e.Encrypt(ctx, "sensor-2", "g1", []byte("secret"), iv)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := e.Decrypt(ctx, "sensor-2", "g1", ct, iv); err != nil || string(pt) != "secret" {
		t.Fatalf("Decrypt by the owner = %q, %v", pt, err)
	}
	// "sensor" + "-2g1" concatenates like "sensor-2" + "g1"; the keys differ.
	if _, err := e.Decrypt(ctx, "sensor", "-2g1", ct, iv); !fault.Is(err, fault.InvalidArgs) {
		t.Fatalf("Decrypt by sensor (generation -2g1) of sensor-2's ciphertext: %v; want InvalidArgs", err)
	}
	if bytes.Equal(Derivation("sensor", "-2g1"), Derivation("sensor-2", "g1")) {
		t.Fatal("Derivation(sensor, -2g1) == Derivation(sensor-2, g1)")
	}
}

func TestGCMNonceKeepsTwelveByteIVsAndHashesOthers(t *testing.T) {
	iv12 := []byte("twelve bytes")
	if got := gcmNonce(iv12); !bytes.Equal(got, iv12) {
		t.Fatalf("gcmNonce(12 bytes) = %x, want the IV itself", got)
	}
	a, b := gcmNonce([]byte("0123456789")), gcmNonce([]byte("0123456789"))
	if len(a) != 12 || !bytes.Equal(a, b) {
		t.Fatalf("gcmNonce(10 bytes) = %x, %x; want 12 equal bytes", a, b)
	}
	if bytes.Equal(gcmNonce([]byte("0123456789")), gcmNonce([]byte("0123456788"))) {
		t.Fatal("different IVs gave the same nonce")
	}
}
