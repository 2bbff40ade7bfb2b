package adapter_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/keys"
	"github.com/edgev2/edgev2/keys/client"
)

// TestKeydPreloadedKeyIsNotServedUnderItsTokenLabel: [preloaded_keys]
// binds the key labelled factory-key on the base token to id "factory",
// read-only. The engine finds keys by label, so the same object was also an
// ordinary key "factory-key": a caller polkit allows on that name (not on
// "factory") could sign with the device's factory key, move it away or
// delete it from the token. The configuration's id is the only name it
// answers to, and the token object is neither moved, replaced nor deleted.
func TestKeydPreloadedKeyIsNotServedUnderItsTokenLabel(t *testing.T) {
	tok := factoryKeyToken(t, "edgev2-preload-alias")
	k := startKeydWithToken(t, tok, fmt.Sprintf("\n[preloaded_keys]\nfactory = \"pkcs11:token=%s;object=factory-key\"\n", tok.Label))
	ctx := ctxT(t)
	if ids, err := k.keys.ListKeys(ctx); err != nil || slices.Contains(ids, "factory-key") {
		t.Errorf("ListKeys = %v, %v; want the preloaded key listed as factory only", ids, err)
	}
	if _, err := k.keys.Key("factory-key").Sign(ctx, keys.MechECDSASHA256, []byte("x")); err == nil {
		t.Errorf("Sign with the preloaded key under its token label factory-key worked; want it refused")
	}
	if err := k.keys.MoveKey(ctx, "factory-key", "taken"); !fault.Is(err, fault.ReadOnly) {
		t.Errorf("MoveKey(factory-key, taken) = %v; want ReadOnly", err)
	}
	if _, err := k.keys.CreateKeyPair(ctx, "other", "ec-p256"); err != nil {
		t.Fatal(err)
	}
	if err := k.keys.MoveKey(ctx, "other", "factory-key"); !fault.Is(err, fault.ReadOnly) {
		t.Errorf("MoveKey(other, factory-key) = %v; want ReadOnly", err)
	}
	if err := k.keys.DeleteKey(ctx, "factory-key"); !fault.Is(err, fault.ReadOnly) {
		t.Errorf("DeleteKey(factory-key) = %v; want ReadOnly", err)
	}
	if _, err := k.keys.Key("factory").Sign(ctx, keys.MechECDSASHA256, []byte("still the factory key")); err != nil {
		t.Fatalf("the preloaded key no longer signs: %v", err)
	}
}

// TestKeydPreloadedKeyThatDoesNotLoadKeepsItsTokenLabel: a preloaded key
// that does not load (its URI's PIN is not the token's) or does not exist
// yet still owns its label on the base token — a caller could otherwise use
// or delete it under that label, or create a key there that becomes the
// preloaded key at the next start.
func TestKeydPreloadedKeyThatDoesNotLoadKeepsItsTokenLabel(t *testing.T) {
	tok := factoryKeyToken(t, "edgev2-preload-unloaded")
	k := startKeydWithToken(t, tok, fmt.Sprintf("\n[preloaded_keys]\nfactory = \"pkcs11:token=%s;object=factory-key?pin-value=not-the-pin\"\nlater = \"pkcs11:token=%s;object=not-yet\"\n", tok.Label, tok.Label))
	ctx := ctxT(t)
	if _, err := k.keys.Key("factory").Sign(ctx, keys.MechECDSASHA256, []byte("x")); err == nil {
		t.Fatal("the preloaded key signed with a URI whose PIN is not the token's; the test needs it not to load")
	}
	if _, err := k.keys.Key("factory-key").Sign(ctx, keys.MechECDSASHA256, []byte("x")); err == nil {
		t.Errorf("Sign under the token label factory-key of a preloaded key that did not load worked; want it refused")
	}
	if err := k.keys.DeleteKey(ctx, "factory-key"); !fault.Is(err, fault.ReadOnly) {
		t.Errorf("DeleteKey(factory-key) = %v; want ReadOnly", err)
	}
	if _, err := k.keys.CreateKeyPair(ctx, "not-yet", "ec-p256"); !fault.Is(err, fault.ReadOnly) {
		t.Errorf("CreateKeyPair(not-yet), the label of preloaded key later = %v; want ReadOnly", err)
	}
}

// TestKeydPreloadedKeyFileIsNotServedUnderItsFileName: the file engine
// keeps key <id> in <homedir>/<id>.key, and keyd's state directory is where
// a key file only edgekeys may read naturally goes. A preloaded key
// configured as file://<homedir>/factory.key was therefore also the file of
// engine key "factory": a caller polkit allows on that name (not on the
// preloaded id) could create a key "factory" — replacing the device's
// factory key file at the next start — or delete it. Such a name is the
// preloaded key's, read-only, whether its file exists yet or not (the
// store's file of id "notyet" is notyet.key; other characters than
// [A-Za-z0-9] are escaped, so "not-yet.key" would be no key's file).
func TestKeydPreloadedKeyFileIsNotServedUnderItsFileName(t *testing.T) {
	d, home, keyFile, factory, priv := factoryKeyInStore(t)
	d.StartDaemon(t, testenv.Keyd, testenv.Daemon{Config: fmt.Sprintf("\n[preloaded_keys]\nfactory-id = \"file://%s\"\nlater = \"file://%s\"\n",
		keyFile, filepath.Join(home, "notyet.key"))})
	k := d.Keys()
	ctx := ctxT(t)

	if ids, err := k.ListKeys(ctx); err != nil || slices.Contains(ids, "factory") || !slices.Contains(ids, "factory-id") {
		t.Errorf("ListKeys = %v, %v; want the preloaded key listed as factory-id only", ids, err)
	}
	for _, name := range []string{"factory", "notyet"} {
		if _, err := k.CreateKeyPair(ctx, name, "ec-p256"); !fault.Is(err, fault.ReadOnly) {
			t.Errorf("CreateKeyPair(%s), a preloaded key's file = %v; want ReadOnly", name, err)
		}
		if err := k.DeleteKey(ctx, name); !fault.Is(err, fault.ReadOnly) {
			t.Errorf("DeleteKey(%s) = %v; want ReadOnly", name, err)
		}
	}
	moveOntoFactoryIsReadOnly(t, k, keyFile, factory)
	data := []byte("still the factory key")
	sig, err := k.Key("factory-id").Sign(ctx, keys.MechECDSASHA256, data)
	if err != nil {
		t.Fatalf("the preloaded key no longer signs: %v", err)
	}
	if digest := sha256.Sum256(data); !ecdsa.VerifyASN1(&priv.PublicKey, digest[:], sig) {
		t.Errorf("the preloaded key's signature does not verify with the factory key")
	}
}

// TestKeydPreloadedKeyLinkedToAStoreFileIsNotServedUnderItsFileName: a
// preloaded key configured as file:///etc/.../device-id.key, a symbolic link
// to <homedir>/factory.key, is read from that file too, so engine key
// "factory" must be read-only as when the path names the file itself: a
// caller moving a key of its own onto "factory" replaced the device's
// factory key file, choosing the key keyd loads as factory-id at its next
// start.
func TestKeydPreloadedKeyLinkedToAStoreFileIsNotServedUnderItsFileName(t *testing.T) {
	d, home, keyFile, factory, _ := factoryKeyInStore(t)
	links := filepath.Join(filepath.Dir(home), "etc-keys")
	if err := os.MkdirAll(links, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(links, "device-id.key")
	if err := os.Symlink(keyFile, link); err != nil {
		t.Fatal(err)
	}
	d.StartDaemon(t, testenv.Keyd, testenv.Daemon{Config: fmt.Sprintf("\n[preloaded_keys]\nfactory-id = \"file://%s\"\n", link)})
	k := d.Keys()
	ctx := ctxT(t)
	if _, err := k.Key("factory-id").Sign(ctx, keys.MechECDSASHA256, []byte("x")); err != nil {
		t.Fatalf("the preloaded key does not sign through its link: %v", err)
	}
	if err := k.DeleteKey(ctx, "factory"); !fault.Is(err, fault.ReadOnly) {
		t.Errorf("DeleteKey(factory), the file a preloaded key's link names = %v; want ReadOnly", err)
	}
	if _, err := k.CreateKeyPair(ctx, "factory", "ec-p256"); !fault.Is(err, fault.ReadOnly) {
		t.Errorf("CreateKeyPair(factory) = %v; want ReadOnly", err)
	}
	moveOntoFactoryIsReadOnly(t, k, keyFile, factory)
}

// moveOntoFactoryIsReadOnly: a key of the caller's own moved onto engine
// key "factory" is refused as ReadOnly and the factory key file (holding
// factory) stays as it was.
func moveOntoFactoryIsReadOnly(t *testing.T, k *client.Client, keyFile string, factory []byte) {
	t.Helper()
	ctx := ctxT(t)
	if _, err := k.CreateKeyPair(ctx, "other", "ec-p256"); err != nil {
		t.Fatal(err)
	}
	if err := k.MoveKey(ctx, "other", "factory"); !fault.Is(err, fault.ReadOnly) {
		t.Errorf("MoveKey(other, factory) = %v; want ReadOnly", err)
	}
	if got, err := os.ReadFile(keyFile); err != nil || !bytes.Equal(got, factory) {
		t.Fatalf("the factory key file changed (%v)", err)
	}
}

// factoryKeyInStore is a Device whose keyd (not started) has an EC key file
// factory.key, a plain PKCS#8 PEM as a factory writes one, in its home: the
// file engine's store.
func factoryKeyInStore(t *testing.T) (d *testenv.Device, home, keyFile string, pemData []byte, priv *ecdsa.PrivateKey) {
	t.Helper()
	testenv.RequireRoot(t)
	d = testenv.StartDevice(t, testenv.DeviceOptions{})
	home = d.Home(testenv.Keyd)
	uid, gid := testenv.EnsureUser(t, testenv.ServiceUser)
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chown(home, uid, gid)
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	keyFile = filepath.Join(home, "factory.key")
	pemData = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := os.WriteFile(keyFile, pemData, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chown(keyFile, uid, gid)
	return d, home, keyFile, pemData, priv
}
