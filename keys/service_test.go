package keys

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/testpki"
)

func newFileService(t *testing.T) (*Service, string) {
	t.Helper()
	dir := t.TempDir()
	e, err := OpenFileEngine(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	return NewService(e, nil, slog.New(slog.NewTextHandler(io.Discard, nil))), dir
}

// newServiceWithUsageKeys is a file-engine Service holding a symmetric key
// of each usage, named for what it is: "hmac" signs, "master" derives,
// "aes" encrypts; tests use them where they do not fit.
func newServiceWithUsageKeys(t *testing.T) *Service {
	t.Helper()
	s, _ := newFileService(t)
	for _, k := range []struct {
		id    string
		usage Usage
	}{{"hmac", UsageSign}, {"master", UsageDerive}, {"aes", UsageEncrypt}} {
		if _, _, err := s.CreateKey(context.Background(), k.id, k.usage, nil); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func TestSignVerifyEveryMechanismOnFileEngine(t *testing.T) {
	ctx := context.Background()
	s, _ := newFileService(t)
	data := []byte("edge data to sign")
	digest := sha256.Sum256(data)
	tests := []struct {
		id, algs, mech string
		data           []byte
	}{
		{"p256", "ec-p256", MechECDSASHA256, data},
		{"p256-pre", "ec-p256", MechECDSA, digest[:]},
		{"p384", "ec-p384", MechECDSASHA256, data},
		{"rsa2048", "rsa-2048", MechRSAPKCS1SHA256, data},
		{"rsa2048-pss", "rsa-2048", MechRSAPSSSHA256, data},
		{"rsa3072", "rsa-3072", MechRSAPKCS1SHA256, data},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			info, created, err := s.CreateKeyPair(ctx, tt.id, tt.algs)
			if err != nil || !created {
				t.Fatalf("CreateKeyPair: %v, created=%v", err, created)
			}
			sig, err := s.Sign(ctx, tt.id, tt.mech, tt.data)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			ok, err := s.Verify(ctx, tt.id, tt.mech, tt.data, sig)
			if err != nil || !ok {
				t.Fatalf("Verify = %v, %v", ok, err)
			}
			// Independent check with Go's crypto on the public key.
			switch pub := info.Public.(type) {
			case *ecdsa.PublicKey:
				if !ecdsa.VerifyASN1(pub, digest[:], sig) {
					t.Error("ECDSA signature does not verify with the public key")
				}
			case *rsa.PublicKey:
				var err error
				if tt.mech == MechRSAPSSSHA256 {
					err = rsa.VerifyPSS(pub, 5, digest[:], sig, &rsa.PSSOptions{SaltLength: 32})
				} else {
					err = rsa.VerifyPKCS1v15(pub, 5, digest[:], sig)
				}
				if err != nil {
					t.Errorf("RSA signature does not verify: %v", err)
				}
			}
			sig[len(sig)-1] ^= 1
			if ok, _ := s.Verify(ctx, tt.id, tt.mech, tt.data, sig); ok {
				t.Error("a corrupted signature verified")
			}
		})
	}
}

func TestHMACAndDerivedKeysMatchReferenceHMAC(t *testing.T) {
	ctx := context.Background()
	s, _ := newFileService(t)
	master := []byte("0123456789abcdef0123456789abcdef")
	if _, _, err := s.CreateKey(ctx, "master", UsageDerive, master); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CreateKey(ctx, "signer", UsageSign, master); err != nil {
		t.Fatal(err)
	}
	mac := func(k, d []byte) []byte { m := hmac.New(sha256.New, k); m.Write(d); return m.Sum(nil) }
	got, err := s.Sign(ctx, "signer", MechHMACSHA256, []byte("x"))
	if err != nil || !hmac.Equal(got, mac(master, []byte("x"))) {
		t.Fatalf("HMAC = %x, %v", got, err)
	}
	deriv := []byte("module1:gen1:primary")
	derived, err := s.ExportDerived(ctx, "master", deriv)
	if err != nil || !hmac.Equal(derived, mac(master, deriv)) {
		t.Fatalf("ExportDerived = %x, %v", derived, err)
	}
	sig, err := s.SignDerived(ctx, "master", deriv, MechHMACSHA256, []byte("payload"))
	if err != nil || !hmac.Equal(sig, mac(derived, []byte("payload"))) {
		t.Fatalf("SignDerived = %x, %v", sig, err)
	}
}

func TestEncryptDecryptRoundTrips(t *testing.T) {
	ctx := context.Background()
	s, _ := newFileService(t)
	aesKey := make([]byte, 32)
	rand.Read(aesKey)
	if _, _, err := s.CreateKey(ctx, "aes", UsageEncrypt, aesKey); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CreateKeyPair(ctx, "rsa", "rsa-2048"); err != nil {
		t.Fatal(err)
	}
	pt := []byte("secret payload")
	iv := make([]byte, 12)
	aad := []byte("context")
	ct, err := s.Encrypt(ctx, "aes", MechAES256GCM, pt, CipherOptions{IV: iv, AAD: aad})
	if err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(aesKey)
	gcm, _ := cipher.NewGCM(block)
	if want := gcm.Seal(nil, iv, pt, aad); string(want) != string(ct) {
		t.Fatal("aes-256-gcm output differs from Go's AES-GCM")
	}
	if got, err := s.Decrypt(ctx, "aes", MechAES256GCM, ct, CipherOptions{IV: iv, AAD: aad}); err != nil || string(got) != string(pt) {
		t.Fatalf("Decrypt = %q, %v", got, err)
	}
	if _, err := s.Decrypt(ctx, "aes", MechAES256GCM, ct, CipherOptions{IV: iv, AAD: []byte("other")}); !fault.Is(err, fault.InvalidArgs) {
		t.Fatalf("Decrypt with wrong aad = %v, want InvalidArgs", err)
	}
	auto, err := s.Encrypt(ctx, "aes", MechAES256GCM, pt, CipherOptions{})
	if err != nil || len(auto) != 12+len(pt)+16 {
		t.Fatalf("Encrypt with random iv = %d bytes, %v", len(auto), err)
	}
	if got, err := s.Decrypt(ctx, "aes", MechAES256GCM, auto, CipherOptions{}); err != nil || string(got) != string(pt) {
		t.Fatalf("Decrypt of random-iv output = %q, %v", got, err)
	}
	rct, err := s.Encrypt(ctx, "rsa", MechRSAOAEPSHA256, pt, CipherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Decrypt(ctx, "rsa", MechRSAOAEPSHA256, rct, CipherOptions{}); err != nil || string(got) != string(pt) {
		t.Fatalf("OAEP Decrypt = %q, %v", got, err)
	}
}

func TestMisfitsAndBadInputAreInvalidArgs(t *testing.T) {
	ctx := context.Background()
	s := newServiceWithUsageKeys(t)
	s.CreateKeyPair(ctx, "ec", "ec-p256")
	tests := []struct {
		name string
		call func() error
	}{
		{"unknown mechanism", func() error { _, err := s.Sign(ctx, "ec", "md5-rsa", nil); return err }},
		{"hmac on ec key", func() error { _, err := s.Sign(ctx, "ec", MechHMACSHA256, nil); return err }},
		{"ecdsa on hmac key", func() error { _, err := s.Sign(ctx, "hmac", MechECDSASHA256, nil); return err }},
		{"hmac on aes key", func() error { _, err := s.Sign(ctx, "aes", MechHMACSHA256, nil); return err }},
		{"encrypt mechanism to Sign", func() error { _, err := s.Sign(ctx, "aes", MechAES256GCM, nil); return err }},
		{"oaep on ec key", func() error { _, err := s.Encrypt(ctx, "ec", MechRSAOAEPSHA256, nil, CipherOptions{}); return err }},
		{"ecdsa digest of wrong size", func() error { _, err := s.Sign(ctx, "ec", MechECDSA, []byte("short")); return err }},
		{"16 MiB of data", func() error { _, err := s.Sign(ctx, "hmac", MechHMACSHA256, make([]byte, 16<<20)); return err }},
		{"short iv", func() error {
			_, err := s.Encrypt(ctx, "aes", MechAES256GCM, nil, CipherOptions{IV: []byte{1}})
			return err
		}},
		{"truncated ciphertext", func() error {
			_, err := s.Decrypt(ctx, "aes", MechAES256GCM, []byte{1, 2}, CipherOptions{})
			return err
		}},
		{"derive from ec key", func() error { _, err := s.ExportDerived(ctx, "ec", []byte("d")); return err }},
		{"derive from a sign key", func() error { _, err := s.ExportDerived(ctx, "hmac", []byte("d")); return err }},
		{"plain Sign with a master key", func() error { _, err := s.Sign(ctx, "master", MechHMACSHA256, []byte("d")); return err }},
		{"derive with ecdsa", func() error { _, err := s.SignDerived(ctx, "master", nil, MechECDSA, nil); return err }},
		{"unknown usage", func() error { _, _, err := s.CreateKey(ctx, "u", Usage("wrap"), nil); return err }},
		{"short sign value", func() error { _, _, err := s.CreateKey(ctx, "v", UsageSign, []byte("short")); return err }},
		{"aes value of 16 bytes", func() error { _, _, err := s.CreateKey(ctx, "v", UsageEncrypt, make([]byte, 16)); return err }},
		{"empty algorithms", func() error { _, _, err := s.CreateKeyPair(ctx, "p", ""); return err }},
		{"unknown algorithm", func() error { _, _, err := s.CreateKeyPair(ctx, "p", "dsa-1024"); return err }},
		{"symmetric as pair", func() error { _, _, err := s.CreateKeyPair(ctx, "p", "symmetric"); return err }},
		{"move onto itself", func() error { return s.Move(ctx, "ec", "ec") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !fault.Is(err, fault.InvalidArgs) {
				t.Fatalf("got %v, want InvalidArgs", err)
			}
		})
	}
}

func TestHostileIDsStayInsideTheStore(t *testing.T) {
	ctx := context.Background()
	s, dir := newFileService(t)
	accepted := []string{"../../etc/shadow", "a/b", "/abs", ".", "..", "_", "é", strings.Repeat("/", 255), strings.Repeat("x", 255)}
	for _, id := range accepted {
		if _, _, err := s.CreateKey(ctx, id, UsageSign, nil); err != nil {
			t.Fatalf("CreateKey(%q): %v", id, err)
		}
		if got, err := s.Get(ctx, id); err != nil || got.ID != id {
			t.Fatalf("Get(%q) = %q, %v", id, got.ID, err)
		}
	}
	rejected := []string{"", "a\x00b", "line\nbreak", strings.Repeat("x", 4096)}
	for _, id := range rejected {
		if _, _, err := s.CreateKey(ctx, id, UsageSign, nil); !fault.Is(err, fault.InvalidArgs) {
			t.Fatalf("CreateKey(%q) = %v, want InvalidArgs", id, err)
		}
	}
	// Every file is directly inside the store, 0600.
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.IsDir() {
			if p != dir && p != filepath.Join(dir, "keys") {
				t.Errorf("unexpected directory %s", p)
			}
			return nil
		}
		if filepath.Dir(p) != filepath.Join(dir, "keys") {
			t.Errorf("key file %s outside the store", p)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", p, fi.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ids, _ := s.List(ctx)
	if len(ids) != len(accepted) {
		t.Errorf("List = %d ids, want %d", len(ids), len(accepted))
	}
}

func TestCreateIsIdempotentAndRefusesADifferentValue(t *testing.T) {
	ctx := context.Background()
	s, _ := newFileService(t)
	v := []byte("0123456789abcdef0123456789abcdef")
	if _, created, err := s.CreateKey(ctx, "k", UsageSign, v); err != nil || !created {
		t.Fatal(err)
	}
	if _, created, err := s.CreateKey(ctx, "k", UsageSign, v); err != nil || created {
		t.Fatalf("same value again = created %v, %v; want the existing key", created, err)
	}
	if _, _, err := s.CreateKey(ctx, "k", UsageSign, nil); err != nil {
		t.Fatalf("create-if-missing without value: %v", err)
	}
	if _, _, err := s.CreateKey(ctx, "k", UsageSign, []byte("another value of thirty-two bytes!!")); !fault.Is(err, fault.AlreadyExists) {
		t.Fatalf("different value = %v, want AlreadyExists", err)
	}
	if _, _, err := s.CreateKey(ctx, "k", UsageEncrypt, nil); !fault.Is(err, fault.AlreadyExists) {
		t.Fatalf("different usage = %v, want AlreadyExists", err)
	}
	if _, _, err := s.CreateKeyPair(ctx, "pair", "ec-p256"); err != nil {
		t.Fatal(err)
	}
	if info, created, err := s.CreateKeyPair(ctx, "pair", "rsa-2048:ec-p256"); err != nil || created || info.Type != ECP256 {
		t.Fatalf("existing pair in list = %v, %v, %v", info.Type, created, err)
	}
	if _, _, err := s.CreateKeyPair(ctx, "pair", "rsa-2048"); !fault.Is(err, fault.AlreadyExists) {
		t.Fatalf("existing pair not in list = %v, want AlreadyExists", err)
	}
}

func TestMoveReplacesTargetAndDeleteForgets(t *testing.T) {
	ctx := context.Background()
	s, _ := newFileService(t)
	s.CreateKeyPair(ctx, "cur", "ec-p256")
	newInfo, _, _ := s.CreateKeyPair(ctx, "next", "ec-p384")
	if _, err := s.Sign(ctx, "cur", MechECDSASHA256, []byte("warm the cache")); err != nil {
		t.Fatal(err)
	}
	if err := s.Move(ctx, "next", "cur"); err != nil {
		t.Fatal(err)
	}
	info, err := s.Get(ctx, "cur")
	if err != nil || info.Type != ECP384 || !info.Public.(*ecdsa.PublicKey).Equal(newInfo.Public) {
		t.Fatalf("after Move, cur = %v, %v; want the moved key", info.Type, err)
	}
	if _, err := s.Get(ctx, "next"); !fault.Is(err, fault.NotFound) {
		t.Fatalf("old id after Move = %v, want NotFound", err)
	}
	if err := s.Move(ctx, "missing", "x"); !fault.Is(err, fault.NotFound) {
		t.Fatalf("Move of missing key = %v, want NotFound", err)
	}
	if err := s.Delete(ctx, "cur"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sign(ctx, "cur", MechECDSASHA256, nil); !fault.Is(err, fault.NotFound) {
		t.Fatalf("Sign after Delete = %v, want NotFound", err)
	}
	if err := s.Delete(ctx, "cur"); !fault.Is(err, fault.NotFound) {
		t.Fatalf("second Delete = %v, want NotFound", err)
	}
}

func TestPreloadedKeysServeButAreReadOnly(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	priv := testpki.NewKey(t)
	pemPath := filepath.Join(dir, "device.pem")
	os.WriteFile(pemPath, testpki.ECKeyPEM(t, priv), 0o600)
	rawPath := filepath.Join(dir, "sas.key")
	os.WriteFile(rawPath, []byte("raw-symmetric-key-bytes-32-long!"), 0o600)

	dev, err := LoadKeyFile("device", pemPath)
	if err != nil {
		t.Fatal(err)
	}
	sas, err := LoadKeyFile("sas", rawPath)
	if err != nil {
		t.Fatal(err)
	}
	e, _ := OpenFileEngine(filepath.Join(dir, "store"))
	s := NewService(e, map[string]Handle{"device": dev, "sas": sas}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	s.MarkUnavailable("hsm-key", fault.New(fault.Unavailable, "token login failed"))

	sig, err := s.Sign(ctx, "device", MechECDSASHA256, []byte("d"))
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("d"))
	if !ecdsa.VerifyASN1(&priv.PublicKey, d[:], sig) {
		t.Fatal("preloaded key signature does not verify")
	}
	if _, err := s.Sign(ctx, "sas", MechHMACSHA256, []byte("d")); err != nil {
		t.Fatal(err)
	}
	if info, _ := s.Get(ctx, "device"); !info.Preloaded {
		t.Error("Preloaded not set")
	}
	for _, err := range []error{s.Delete(ctx, "device"), s.Move(ctx, "device", "x"), s.Delete(ctx, "hsm-key")} {
		if !fault.Is(err, fault.ReadOnly) {
			t.Errorf("got %v, want ReadOnly", err)
		}
	}
	if _, err := s.Sign(ctx, "hsm-key", MechECDSASHA256, nil); !fault.Is(err, fault.Unavailable) || !strings.Contains(err.Error(), "hsm-key") {
		t.Errorf("Sign with unavailable preloaded key = %v, want Unavailable naming it", err)
	}
	ids, _ := s.List(ctx)
	if strings.Join(ids, ",") != "device,hsm-key,sas" {
		t.Errorf("List = %v", ids)
	}
}
