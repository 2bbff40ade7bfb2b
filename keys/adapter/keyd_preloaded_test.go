package adapter_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/keys"
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
