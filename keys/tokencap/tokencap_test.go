package tokencap

import (
	"strings"
	"testing"
)

func TestCannotHoldListsKindsAndMissingMechanisms(t *testing.T) {
	p11kit := []string{"CKM_EC_KEY_PAIR_GEN", "CKM_ECDSA", "CKM_RSA_PKCS_KEY_PAIR_GEN", "CKM_RSA_PKCS",
		"CKM_GENERIC_SECRET_KEY_GEN", "CKM_SHA256_HMAC", "CKM_AES_KEY_GEN", "CKM_AES_ECB"}
	got := CannotHold(p11kit)
	if len(got) != 1 || got[0] != "symmetric/encrypt: CKM_AES_GCM" {
		t.Fatalf("CannotHold(p11-kit 0.24 list) = %q; want only symmetric/encrypt: CKM_AES_GCM", got)
	}
	if got := CannotHold(append(p11kit, "CKM_AES_GCM")); len(got) != 0 {
		t.Fatalf("CannotHold(full list) = %q; want none", got)
	}
	if got := CannotHold([]string{"CKM_ECDSA"}); len(got) != 6 || !strings.Contains(strings.Join(got, ";"), "ec-p256: CKM_EC_KEY_PAIR_GEN") {
		t.Fatalf("CannotHold(ECDSA only) = %q", got)
	}
}
