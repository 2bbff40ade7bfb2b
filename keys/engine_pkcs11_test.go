package keys

import (
	"bytes"
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/asn1"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/testenv"
)

// newSoftHSM makes a fresh SoftHSM token and points this process at it.
// SoftHSM reads SOFTHSM2_CONF when the module is initialised, and engines
// release the module on Close, so every test gets its own token directory.
func newSoftHSM(t *testing.T) *testenv.SoftHSMToken {
	t.Helper()
	tok := testenv.NewSoftHSMToken(t, "edgev2-test", os.Getuid(), os.Getgid())
	t.Setenv("SOFTHSM2_CONF", tok.Conf)
	return tok
}

func openSoftHSMEngine(t *testing.T, tok *testenv.SoftHSMToken) *PKCS11Engine {
	t.Helper()
	e, err := OpenPKCS11(context.Background(), PKCS11Config{LibPath: tok.LibPath, BaseSlot: tok.URI()})
	if err != nil {
		t.Fatalf("OpenPKCS11: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func newTestPKCS11Engine(t *testing.T) (*PKCS11Engine, *testenv.SoftHSMToken) {
	t.Helper()
	tok := newSoftHSM(t)
	return openSoftHSMEngine(t, tok), tok
}

func pkcs11Tool(t *testing.T, tok *testenv.SoftHSMToken, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("pkcs11-tool"); err != nil {
		testenv.Missing(t, "pkcs11-tool", "not on PATH (Debian package opensc)")
	}
	args = append([]string{"--module", tok.LibPath}, args...)
	cmd := exec.Command("pkcs11-tool", args...)
	cmd.Env = append(os.Environ(), tok.Env()...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pkcs11-tool %s: %v\n%s", strings.Join(args[2:], " "), err, out)
	}
	return string(out)
}

func verifyWithGo(t *testing.T, info Info, digest, sig []byte, hash crypto.Hash, pss bool) {
	t.Helper()
	switch pub := info.Public.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(pub, digest, sig) {
			t.Fatalf("%s: ECDSA signature does not verify with Go", info.Type)
		}
	case *rsa.PublicKey:
		var err error
		if pss {
			err = rsa.VerifyPSS(pub, hash, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		} else {
			err = rsa.VerifyPKCS1v15(pub, hash, digest, sig)
		}
		if err != nil {
			t.Fatalf("%s pss=%v %s: signature does not verify with Go: %v", info.Type, pss, hash, err)
		}
	default:
		t.Fatalf("Public is %T", info.Public)
	}
}

func digestOf(hash crypto.Hash, msg string) []byte {
	h := hash.New()
	h.Write([]byte(msg))
	return h.Sum(nil)
}

func TestPKCS11SignVerifiesWithGo(t *testing.T) {
	e, tok := newTestPKCS11Engine(t)
	ctx := context.Background()
	for _, typ := range PairTypes {
		t.Run(string(typ), func(t *testing.T) {
			id := "pair-" + string(typ)
			h, err := e.Generate(ctx, id, Spec{Type: typ})
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			info := h.Info()
			if info.ID != id || info.Type != typ || info.Public == nil || info.Preloaded {
				t.Fatalf("Info = %+v", info)
			}
			if !strings.HasPrefix(info.Location, "pkcs11:token=edgev2-test;") || !strings.Contains(info.Location, "object="+id) ||
				strings.Contains(info.Location, tok.PIN) || strings.Contains(info.Location, "pin") {
				t.Fatalf("Location = %q", info.Location)
			}
			switch pub := info.Public.(type) {
			case *ecdsa.PublicKey:
				if pub.Curve.Params().BitSize != map[Type]int{ECP256: 256, ECP384: 384}[typ] {
					t.Fatalf("curve %s for %s", pub.Curve.Params().Name, typ)
				}
			case *rsa.PublicKey:
				if pub.N.BitLen() != typ.RSABits() || pub.E != 65537 {
					t.Fatalf("RSA key %d bits e=%d for %s", pub.N.BitLen(), pub.E, typ)
				}
			}

			// A fresh Open finds the same key.
			h2, err := e.Open(ctx, id)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if i2 := h2.Info(); i2.Type != typ || !i2.Public.(interface{ Equal(crypto.PublicKey) bool }).Equal(info.Public) {
				t.Fatalf("Open gives %+v, Generate gave %+v", i2, info)
			}

			hashes := []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512}
			for _, hash := range hashes {
				modes := []bool{false}
				if typ.IsRSA() {
					modes = []bool{false, true}
				}
				for _, pss := range modes {
					d := digestOf(hash, "edgev2 "+hash.String())
					sig, err := h2.SignDigest(ctx, d, hash, pss)
					if err != nil {
						t.Fatalf("SignDigest(%s, pss=%v): %v", hash, pss, err)
					}
					verifyWithGo(t, info, d, sig, hash, pss)
				}
			}
			if typ.IsEC() {
				if _, err := h2.SignDigest(ctx, digestOf(crypto.SHA256, "x"), crypto.SHA256, true); !fault.Is(err, fault.InvalidArgs) {
					t.Errorf("PSS with an EC key: err = %v, want InvalidArgs", err)
				}
			}
		})
	}
}

func TestPKCS11DecryptOAEPOfGoCiphertext(t *testing.T) {
	e, _ := newTestPKCS11Engine(t)
	ctx := context.Background()
	h, err := e.Generate(ctx, "oaep", Spec{Type: RSA2048})
	if err != nil {
		t.Fatal(err)
	}
	pub := h.Info().Public.(*rsa.PublicKey)
	for _, n := range []int{0, 1, 32, pub.Size() - 2*sha256.Size - 2} {
		msg := make([]byte, n)
		rand.Read(msg)
		ct, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, msg, nil)
		if err != nil {
			t.Fatal(err)
		}
		pt, err := h.DecryptOAEP(ctx, ct)
		if err != nil {
			t.Fatalf("DecryptOAEP of %d bytes: %v", n, err)
		}
		if !bytes.Equal(pt, msg) {
			t.Fatalf("DecryptOAEP = %x, want %x", pt, msg)
		}
	}
	ct, _ := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, []byte("the module SAS key"), nil)
	if _, err := h.DecryptOAEP(ctx, ct[1:]); !fault.Is(err, fault.InvalidArgs) {
		t.Fatalf("short ciphertext: err = %v, want InvalidArgs", err)
	}
	// A label makes lHash differ: the decoding must refuse it.
	labelled, _ := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, []byte("x"), []byte("label"))
	if _, err := h.DecryptOAEP(ctx, labelled); !fault.Is(err, fault.InvalidArgs) {
		t.Fatalf("ciphertext with a label: err = %v, want InvalidArgs", err)
	}
	ct[10] ^= 1
	if _, err := h.DecryptOAEP(ctx, ct); !fault.Is(err, fault.InvalidArgs) || !strings.Contains(err.Error(), `"oaep"`) {
		t.Fatalf("corrupted OAEP ciphertext: err = %v, want InvalidArgs naming the key", err)
	}
}

func TestPKCS11GCMMatchesGoAESGCM(t *testing.T) {
	e, _ := newTestPKCS11Engine(t)
	ctx := context.Background()
	key := make([]byte, 32)
	rand.Read(key)
	h, err := e.Import(ctx, "aes", Spec{Type: Symmetric, Usage: UsageEncrypt}, key)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if info := h.Info(); info.Type != Symmetric || info.Usage != UsageEncrypt || info.Public != nil {
		t.Fatalf("Info = %+v", info)
	}
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(block)
	iv := make([]byte, 12)
	rand.Read(iv)
	aad, msg := []byte("header"), []byte("payload to protect")

	ct, err := h.SealGCM(ctx, iv, aad, msg)
	if err != nil {
		t.Fatalf("SealGCM: %v", err)
	}
	if want := gcm.Seal(nil, iv, msg, aad); !bytes.Equal(ct, want) {
		t.Fatalf("SealGCM = %x, Go gives %x", ct, want)
	}
	pt, err := h.OpenGCM(ctx, iv, aad, gcm.Seal(nil, iv, msg, aad))
	if err != nil || !bytes.Equal(pt, msg) {
		t.Fatalf("OpenGCM of Go's ciphertext = %q, %v", pt, err)
	}
	// Empty plaintext and no AAD work too.
	ct0, err := h.SealGCM(ctx, iv, nil, nil)
	if err != nil || !bytes.Equal(ct0, gcm.Seal(nil, iv, nil, nil)) {
		t.Fatalf("SealGCM(empty) = %x, %v", ct0, err)
	}
	if pt, err := h.OpenGCM(ctx, iv, nil, ct0); err != nil || len(pt) != 0 {
		t.Fatalf("OpenGCM(empty) = %x, %v", pt, err)
	}

	bad := append([]byte(nil), ct...)
	bad[0] ^= 1
	for name, c := range map[string][]byte{"ciphertext": bad, "aad": ct} {
		a := aad
		if name == "aad" {
			a = []byte("other")
		}
		_, err := h.OpenGCM(ctx, iv, a, c)
		var fe *fault.Error
		if errors.As(err, &fe) {
			t.Logf("tampered %s: token says %v", name, fe.Err)
		}
		if !fault.Is(err, fault.InvalidArgs) || !strings.Contains(err.Error(), "authentication failed") {
			t.Errorf("tampered %s: err = %v, want InvalidArgs authentication failed", name, err)
		}
	}
	if _, err := h.SealGCM(ctx, iv[:8], nil, msg); !fault.Is(err, fault.InvalidArgs) {
		t.Errorf("8-byte iv: err = %v, want InvalidArgs", err)
	}

	// A generated AES key round-trips as well.
	g, err := e.Generate(ctx, "aes-gen", Spec{Type: Symmetric, Usage: UsageEncrypt})
	if err != nil {
		t.Fatal(err)
	}
	ct, err = g.SealGCM(ctx, iv, aad, msg)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := g.OpenGCM(ctx, iv, aad, ct); err != nil || !bytes.Equal(pt, msg) {
		t.Fatalf("generated key: OpenGCM = %q, %v", pt, err)
	}
}

func TestPKCS11HMACMatchesGo(t *testing.T) {
	e, _ := newTestPKCS11Engine(t)
	ctx := context.Background()
	for _, n := range []int{32, 64, 128} {
		key := make([]byte, n)
		rand.Read(key)
		id := "hmac-" + string(rune('a'+n/32))
		h, err := e.Import(ctx, id, Spec{Type: Symmetric, Usage: UsageSign}, key)
		if err != nil {
			t.Fatalf("Import %d bytes: %v", n, err)
		}
		if info := h.Info(); info.Usage != UsageSign || info.Type != Symmetric {
			t.Fatalf("Info = %+v", info)
		}
		data := []byte("device-1/modules/m1")
		got, err := h.HMACSHA256(ctx, data)
		if err != nil {
			t.Fatalf("HMACSHA256 (%d-byte key): %v", n, err)
		}
		m := hmac.New(sha256.New, key)
		m.Write(data)
		if want := m.Sum(nil); !bytes.Equal(got, want) {
			t.Fatalf("HMAC with %d-byte key = %x, Go gives %x", n, got, want)
		}
	}
	g, err := e.Generate(ctx, "hmac-gen", Spec{Type: Symmetric, Usage: UsageSign})
	if err != nil {
		t.Fatal(err)
	}
	if mac, err := g.HMACSHA256(ctx, []byte("x")); err != nil || len(mac) != 32 {
		t.Fatalf("generated key: HMACSHA256 = %x, %v", mac, err)
	}
}

func TestPKCS11ImportRejectsWrongSizes(t *testing.T) {
	e, _ := newTestPKCS11Engine(t)
	ctx := context.Background()
	for _, tc := range []struct {
		usage Usage
		n     int
	}{{UsageEncrypt, 16}, {UsageEncrypt, 33}, {UsageSign, 8}, {UsageSign, 129}} {
		_, err := e.Import(ctx, "k", Spec{Type: Symmetric, Usage: tc.usage}, make([]byte, tc.n))
		if !fault.Is(err, fault.InvalidArgs) || !strings.Contains(err.Error(), `"k"`) {
			t.Errorf("%s key of %d bytes: err = %v, want InvalidArgs naming the key", tc.usage, tc.n, err)
		}
	}
	if _, err := e.Import(ctx, "k", Spec{Type: ECP256}, make([]byte, 32)); !fault.Is(err, fault.InvalidArgs) {
		t.Errorf("importing an EC key: err = %v, want InvalidArgs", err)
	}
	if _, err := e.Generate(ctx, "k", Spec{Type: "dsa-1024"}); !fault.Is(err, fault.InvalidArgs) || !strings.Contains(err.Error(), "dsa-1024") {
		t.Errorf("unknown type: err = %v, want InvalidArgs naming the type", err)
	}
}

func TestPKCS11PrimitiveThatDoesNotFitIsInvalidArgs(t *testing.T) {
	e, _ := newTestPKCS11Engine(t)
	ctx := context.Background()
	ec, _ := e.Generate(ctx, "ec", Spec{Type: ECP256})
	mac, _ := e.Generate(ctx, "mac", Spec{Type: Symmetric, Usage: UsageSign})
	enc, _ := e.Generate(ctx, "enc", Spec{Type: Symmetric, Usage: UsageEncrypt})
	iv := make([]byte, 12)
	d := digestOf(crypto.SHA256, "x")
	for name, call := range map[string]func() error{
		"HMAC with EC":       func() error { _, err := ec.HMACSHA256(ctx, d); return err },
		"OAEP with EC":       func() error { _, err := ec.DecryptOAEP(ctx, d); return err },
		"GCM with EC":        func() error { _, err := ec.SealGCM(ctx, iv, nil, d); return err },
		"sign with HMAC key": func() error { _, err := mac.SignDigest(ctx, d, crypto.SHA256, false); return err },
		"GCM with HMAC key":  func() error { _, err := mac.OpenGCM(ctx, iv, nil, make([]byte, 32)); return err },
		"HMAC with AES key":  func() error { _, err := enc.HMACSHA256(ctx, d); return err },
		"short digest":       func() error { _, err := ec.SignDigest(ctx, d[:20], crypto.SHA256, false); return err },
	} {
		if err := call(); !fault.Is(err, fault.InvalidArgs) {
			t.Errorf("%s: err = %v, want InvalidArgs", name, err)
		}
	}
}

func TestPKCS11MoveReplacesTarget(t *testing.T) {
	e, _ := newTestPKCS11Engine(t)
	ctx := context.Background()
	src, err := e.Generate(ctx, "new", Spec{Type: ECP256})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Generate(ctx, "current", Spec{Type: RSA2048}); err != nil {
		t.Fatal(err)
	}
	if err := e.Move(ctx, "new", "current"); err != nil {
		t.Fatalf("Move: %v", err)
	}
	if _, err := e.Open(ctx, "new"); !fault.Is(err, fault.NotFound) {
		t.Fatalf("Open(source) after Move: err = %v, want NotFound", err)
	}
	h, err := e.Open(ctx, "current")
	if err != nil {
		t.Fatalf("Open(target): %v", err)
	}
	if h.Info().Type != ECP256 || !h.Info().Public.(*ecdsa.PublicKey).Equal(src.Info().Public) {
		t.Fatalf("target after Move is %+v, want the moved EC key", h.Info())
	}
	d := digestOf(crypto.SHA256, "moved")
	sig, err := h.SignDigest(ctx, d, crypto.SHA256, false)
	if err != nil {
		t.Fatal(err)
	}
	verifyWithGo(t, h.Info(), d, sig, crypto.SHA256, false)
	if ids, _ := e.List(ctx); strings.Join(ids, ",") != "current" {
		t.Fatalf("List after Move = %q, want [current]", ids)
	}
	if err := e.Move(ctx, "missing", "current"); !fault.Is(err, fault.NotFound) || !strings.Contains(err.Error(), `"missing"`) {
		t.Fatalf("Move of a missing key: err = %v, want NotFound naming it", err)
	}
	// Move to a free id works too.
	if err := e.Move(ctx, "current", "renamed"); err != nil {
		t.Fatal(err)
	}
	if ids, _ := e.List(ctx); strings.Join(ids, ",") != "renamed" {
		t.Fatalf("List = %q, want [renamed]", ids)
	}
}

func TestPKCS11MoveRecoversAfterCrashBeforeCommit(t *testing.T) {
	e, tok := newTestPKCS11Engine(t)
	ctx := context.Background()
	old, err := e.Generate(ctx, "target", Spec{Type: ECP256})
	if err != nil {
		t.Fatal(err)
	}
	// Simulate a crash right after the target was moved to the trash label.
	err = e.base.withSession(ctx, func(h pkcs11.SessionHandle) error {
		objs, err := labelled(e.mod.ctx, h, "target")
		if err != nil {
			return err
		}
		return relabel(e.mod.ctx, h, objs, trashPrefix+"target")
	})
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	e2 := openSoftHSMEngine(t, tok)
	h, err := e2.Open(ctx, "target")
	if err != nil {
		t.Fatalf("Open after recovery: %v", err)
	}
	if !h.Info().Public.(*ecdsa.PublicKey).Equal(old.Info().Public) {
		t.Fatal("recovery did not restore the old target")
	}
}

func TestPKCS11DeleteAndList(t *testing.T) {
	e, _ := newTestPKCS11Engine(t)
	ctx := context.Background()
	for _, id := range []string{"b", "a", "c"} {
		if _, err := e.Generate(ctx, id, Spec{Type: ECP256}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.Import(ctx, "d", Spec{Type: Symmetric, Usage: UsageSign}, make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
	ids, err := e.List(ctx)
	if err != nil || strings.Join(ids, ",") != "a,b,c,d" {
		t.Fatalf("List = %q, %v; want a,b,c,d (sorted, one entry per pair)", ids, err)
	}
	if err := e.Delete(ctx, "b"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := e.Open(ctx, "b"); !fault.Is(err, fault.NotFound) {
		t.Fatalf("Open after Delete: err = %v, want NotFound", err)
	}
	if err := e.Delete(ctx, "b"); !fault.Is(err, fault.NotFound) || !strings.Contains(err.Error(), `"b"`) {
		t.Fatalf("second Delete: err = %v, want NotFound naming the key", err)
	}
	if ids, _ := e.List(ctx); strings.Join(ids, ",") != "a,c,d" {
		t.Fatalf("List after Delete = %q", ids)
	}
}

func TestPKCS11GenerateExistingIsAlreadyExists(t *testing.T) {
	e, _ := newTestPKCS11Engine(t)
	ctx := context.Background()
	if _, err := e.Generate(ctx, "dup", Spec{Type: ECP256}); err != nil {
		t.Fatal(err)
	}
	_, err := e.Generate(ctx, "dup", Spec{Type: RSA2048})
	if !fault.Is(err, fault.AlreadyExists) || !strings.Contains(err.Error(), `"dup"`) {
		t.Fatalf("Generate over an existing key: err = %v, want AlreadyExists naming it", err)
	}
	_, err = e.Import(ctx, "dup", Spec{Type: Symmetric, Usage: UsageSign}, make([]byte, 32))
	if !fault.Is(err, fault.AlreadyExists) {
		t.Fatalf("Import over an existing key: err = %v, want AlreadyExists", err)
	}
}

func TestPKCS11OpenMissingIsNotFound(t *testing.T) {
	e, _ := newTestPKCS11Engine(t)
	_, err := e.Open(context.Background(), "nope")
	if !fault.Is(err, fault.NotFound) || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("err = %v, want NotFound naming the key", err)
	}
}

func TestPKCS11WrongPINIsUnavailableWithoutThePIN(t *testing.T) {
	tok := newSoftHSM(t)
	const wrong = "wrongpin7391"
	uri := "pkcs11:token=" + tok.Label + "?pin-value=" + wrong
	for i := 0; i < 2; i++ {
		e, err := OpenPKCS11(context.Background(), PKCS11Config{LibPath: tok.LibPath, BaseSlot: uri})
		if err == nil {
			e.Close()
			t.Fatal("OpenPKCS11 with a wrong PIN succeeded")
		}
		if !fault.Is(err, fault.Unavailable) {
			t.Fatalf("kind = %v, want Unavailable (%v)", fault.KindOf(err), err)
		}
		msg := err.Error()
		if strings.Contains(msg, wrong) || strings.Contains(msg, tok.PIN) {
			t.Fatalf("error %q contains a PIN", msg)
		}
		if !strings.Contains(msg, "pkcs11_base_slot") {
			t.Fatalf("error %q does not say where the PIN comes from", msg)
		}
		if i == 1 && !strings.Contains(msg, "already refused") {
			t.Fatalf("second attempt with the same wrong PIN: %q, want it refused without a login", msg)
		}
		var fe *fault.Error
		if errors.As(err, &fe) && fe.Err != nil && strings.Contains(fe.Err.Error(), wrong) {
			t.Fatalf("cause %q contains the PIN", fe.Err)
		}
	}
	// The right PIN still works afterwards.
	openSoftHSMEngine(t, tok)
}

func TestPKCS11NoMatchingTokenNamesURIWithoutPIN(t *testing.T) {
	tok := newSoftHSM(t)
	_, err := OpenPKCS11(context.Background(), PKCS11Config{LibPath: tok.LibPath, BaseSlot: "pkcs11:token=absent?pin-value=" + tok.PIN})
	if err == nil || !strings.Contains(err.Error(), "pkcs11:token=absent") || strings.Contains(err.Error(), tok.PIN) {
		t.Fatalf("err = %v, want one naming pkcs11:token=absent without the PIN", err)
	}
}

func TestPKCS11ConcurrentSigning(t *testing.T) {
	e, _ := newTestPKCS11Engine(t)
	ctx := context.Background()
	ec, err := e.Generate(ctx, "busy-ec", Spec{Type: ECP256})
	if err != nil {
		t.Fatal(err)
	}
	mac, err := e.Generate(ctx, "busy-mac", Spec{Type: Symmetric, Usage: UsageSign})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				d := digestOf(crypto.SHA256, string(rune(g*100+i)))
				sig, err := ec.SignDigest(ctx, d, crypto.SHA256, false)
				if err != nil {
					errs <- err
					return
				}
				if !ecdsa.VerifyASN1(ec.Info().Public.(*ecdsa.PublicKey), d, sig) {
					errs <- errors.New("signature does not verify")
					return
				}
				if _, err := mac.HMACSHA256(ctx, d); err != nil {
					errs <- err
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(e.base.permits); n > defaultPKCS11PoolSize {
		t.Errorf("%d sessions open, pool size is %d", n, defaultPKCS11PoolSize)
	}
}

func TestPKCS11KeyAppearsInPkcs11ToolUnderItsLabel(t *testing.T) {
	e, tok := newTestPKCS11Engine(t)
	ctx := context.Background()
	if _, err := e.Generate(ctx, "visible-key", Spec{Type: ECP256}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Import(ctx, "visible-secret", Spec{Type: Symmetric, Usage: UsageSign}, make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
	out := pkcs11Tool(t, tok, "--token-label", tok.Label, "--list-objects", "--login", "--pin", tok.PIN)
	for _, want := range []string{"Private Key Object; EC", "Public Key Object; EC", "Secret Key Object; Generic secret length 32", "label:      visible-key", "label:      visible-secret"} {
		if !strings.Contains(out, want) {
			t.Errorf("pkcs11-tool output lacks %q:\n%s", want, out)
		}
	}
	// The private key is sensitive and cannot be extracted.
	if !strings.Contains(out, "sensitive") || !strings.Contains(out, "never extractable") {
		t.Errorf("pkcs11-tool does not show the key as sensitive and never extractable:\n%s", out)
	}
}

func TestPKCS11OpenURIUsesKeyMadeByPkcs11Tool(t *testing.T) {
	tok := newSoftHSM(t)
	pkcs11Tool(t, tok, "--token-label", tok.Label, "--login", "--pin", tok.PIN,
		"--keypairgen", "--key-type", "EC:prime256v1", "--label", "pre", "--id", "a1b2")
	ctx := context.Background()

	check := func(t *testing.T, e *PKCS11Engine, uri string) {
		t.Helper()
		h, err := e.OpenURI(ctx, uri)
		if err != nil {
			t.Fatalf("OpenURI: %v", err)
		}
		info := h.Info()
		if !info.Preloaded || info.Type != ECP256 || strings.Contains(info.Location, tok.PIN) {
			t.Fatalf("Info = %+v", info)
		}
		d := digestOf(crypto.SHA256, "preloaded")
		sig, err := h.SignDigest(ctx, d, crypto.SHA256, false)
		if err != nil {
			t.Fatalf("SignDigest: %v", err)
		}
		verifyWithGo(t, info, d, sig, crypto.SHA256, false)
	}

	t.Run("base token", func(t *testing.T) {
		e := openSoftHSMEngine(t, tok)
		check(t, e, "pkcs11:token="+tok.Label+";object=pre?pin-value="+tok.PIN)
		check(t, e, "pkcs11:object=pre")
		check(t, e, "pkcs11:token="+tok.Label+";id=%a1%b2")
		if _, err := e.OpenURI(ctx, "pkcs11:object=absent"); !fault.Is(err, fault.NotFound) {
			t.Fatalf("absent object: err = %v, want NotFound", err)
		}
		e.Close()
	})
	t.Run("module without base slot", func(t *testing.T) {
		e, err := OpenPKCS11Module(ctx, tok.LibPath, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		check(t, e, "pkcs11:token="+tok.Label+";object=pre?pin-value="+tok.PIN)
		_, err = e.Generate(ctx, "k", Spec{Type: ECP256})
		if !fault.Is(err, fault.InvalidArgs) || !strings.Contains(err.Error(), "no pkcs11_base_slot configured") {
			t.Fatalf("Generate without a base slot: err = %v", err)
		}
		if _, err := e.List(ctx); !fault.Is(err, fault.InvalidArgs) {
			t.Fatalf("List without a base slot: err = %v", err)
		}
	})
}

func TestPKCS11OpenURILogsInToOtherToken(t *testing.T) {
	tok := newSoftHSM(t)
	other := tok.AddToken(t, "other")
	pkcs11Tool(t, other, "--token-label", other.Label, "--login", "--pin", other.PIN,
		"--keypairgen", "--key-type", "rsa:2048", "--label", "elsewhere")
	e := openSoftHSMEngine(t, tok)
	ctx := context.Background()

	const wrong = "wrongpin5512"
	for i := 0; i < 2; i++ {
		_, err := e.OpenURI(ctx, "pkcs11:token=other;object=elsewhere?pin-value="+wrong)
		if !fault.Is(err, fault.Unavailable) || strings.Contains(err.Error(), wrong) {
			t.Fatalf("wrong PIN for the other token: err = %v, want Unavailable without the PIN", err)
		}
	}
	h, err := e.OpenURI(ctx, "pkcs11:token=other;object=elsewhere?pin-value="+other.PIN)
	if err != nil {
		t.Fatalf("OpenURI on the other token: %v", err)
	}
	if h.Info().Type != RSA2048 || !strings.Contains(h.Info().Location, "token=other") {
		t.Fatalf("Info = %+v", h.Info())
	}
	d := digestOf(crypto.SHA256, "elsewhere")
	sig, err := h.SignDigest(ctx, d, crypto.SHA256, true)
	if err != nil {
		t.Fatal(err)
	}
	verifyWithGo(t, h.Info(), d, sig, crypto.SHA256, true)
	// The other token's keys are not the base token's.
	if _, err := e.Open(ctx, "elsewhere"); !fault.Is(err, fault.NotFound) {
		t.Fatalf("Open on the base token: err = %v, want NotFound", err)
	}
}

func TestPKCS11HandleRefindsReplacedObject(t *testing.T) {
	e, _ := newTestPKCS11Engine(t)
	ctx := context.Background()
	key := bytes.Repeat([]byte{7}, 32)
	h, err := e.Import(ctx, "rotating", Spec{Type: Symmetric, Usage: UsageSign}, key)
	if err != nil {
		t.Fatal(err)
	}
	// Replace the object behind the handle's back: its cached handle goes stale.
	if err := e.Delete(ctx, "rotating"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Import(ctx, "rotating", Spec{Type: Symmetric, Usage: UsageSign}, key); err != nil {
		t.Fatal(err)
	}
	mac, err := h.HMACSHA256(ctx, []byte("x"))
	if err != nil {
		t.Fatalf("HMACSHA256 through the stale handle: %v", err)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte("x"))
	if !bytes.Equal(mac, m.Sum(nil)) {
		t.Fatal("wrong HMAC after re-find")
	}
}

func TestPKCS11CloseWaitsForOperationsThenRefusesThem(t *testing.T) {
	e, _ := newTestPKCS11Engine(t)
	ctx := context.Background()
	h, err := e.Generate(ctx, "closing", Spec{Type: ECP256})
	if err != nil {
		t.Fatal(err)
	}
	d := digestOf(crypto.SHA256, "x")
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if _, err := h.SignDigest(ctx, d, crypto.SHA256, false); err != nil {
					if !fault.Is(err, fault.Unavailable) {
						t.Errorf("sign during Close: err = %v, want Unavailable", err)
					}
					return
				}
			}
		}()
	}
	e.Close()
	wg.Wait()
	if _, err := h.SignDigest(ctx, d, crypto.SHA256, false); !fault.Is(err, fault.Unavailable) {
		t.Fatalf("sign after Close: err = %v, want Unavailable", err)
	}
}

func TestParseECPointAcceptsDERAndRawForms(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	raw, _ := k.PublicKey.Bytes()
	der, _ := asn1.Marshal(raw)
	for name, b := range map[string][]byte{"DER OCTET STRING": der, "raw": raw} {
		pub, err := parseECPoint(elliptic.P384(), b)
		if err != nil || !pub.Equal(&k.PublicKey) {
			t.Errorf("%s: got %v, %v", name, pub, err)
		}
	}
	if _, err := parseECPoint(elliptic.P384(), append(der, 0)); err == nil {
		t.Error("trailing data accepted")
	}
	if _, err := parseECPoint(elliptic.P256(), raw); err == nil {
		t.Error("P-384 point accepted as P-256")
	}
}
