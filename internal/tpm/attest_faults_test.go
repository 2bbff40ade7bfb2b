package tpm_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/internal/tpm"
)

func wantErr(t *testing.T, what string, err error, kind fault.Kind, fixes ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error", what)
	}
	if !fault.Is(err, kind) {
		t.Errorf("%s: kind %v, want %v: %v", what, fault.KindOf(err), kind, err)
	}
	for _, f := range fixes {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("%s: error does not say %q: %v", what, f, err)
		}
	}
}

func TestAbsentTPMIsUnavailableNamingTheDeviceAndFix(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	dev := filepath.Join(t.TempDir(), "tpmrm0")
	for _, tc := range []struct {
		name  string
		cfg   tpm.Config
		fixes []string
	}{
		{"address nothing listens on", tpm.Config{Address: addr}, []string{"TPM at " + addr, "absent", "connection refused", "[tpm] address"}},
		{"device that does not exist", tpm.Config{Device: dev}, []string{"TPM " + dev, "does not exist", "modprobe", "[tpm] device"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tpm.Open(context.Background(), tc.cfg)
			wantErr(t, "Open", err, fault.Unavailable, tc.fixes...)
		})
	}
	_, err = tpm.Open(context.Background(), tpm.Config{Address: addr, AuthKeyHandle: 0x01000100})
	wantErr(t, "Open with a non-persistent auth key handle", err, fault.InvalidArgs, "0x01000100", "0x81000100")
}

func TestWrongEndorsementAuthNamesTheConfigKey(t *testing.T) {
	testenv.RequireRoot(t)
	s := testenv.StartSwtpm(t)
	ctx := context.Background()
	tp := openSwtpm(t, s)
	blob := sealFor(t, tp, bytes.Repeat([]byte{7}, 32))
	_, err := tpm2.HierarchyChangeAuth{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(nil)},
		NewAuth:    tpm2.TPM2BAuth{Buffer: []byte("endorsement-secret")},
	}.Execute(tp.Transport())
	if err != nil {
		t.Fatalf("set an endorsement auth: %v", err)
	}
	err = tp.ImportAuthKey(ctx, blob)
	wantErr(t, "ImportAuthKey without the endorsement auth", err, fault.NotAuthorized,
		"endorsement hierarchy", "[tpm.hierarchy_authorization] endorsement", "tpm2_changeauth -c e")
	if strings.Contains(err.Error(), "endorsement-secret") {
		t.Fatal("the error carries the auth value")
	}
	tp.Close()
	withAuth, err := tpm.Open(ctx, tpm.Config{Address: s.Addr, EndorsementAuth: []byte("endorsement-secret")})
	if err != nil {
		t.Fatal(err)
	}
	defer withAuth.Close()
	if err := withAuth.ImportAuthKey(ctx, blob); err != nil {
		t.Fatalf("ImportAuthKey with the configured endorsement auth: %v", err)
	}
}

// lockOut drives the TPM into dictionary-attack lockout: wrong passwords
// on a DA-protected HMAC key until the TPM answers TPM_RC_LOCKOUT.
func lockOut(t *testing.T, tp *tpm.TPM) {
	t.Helper()
	tr := tp.Transport()
	tmpl := tpm2.TPMTPublic{
		Type: tpm2.TPMAlgKeyedHash, NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{UserWithAuth: true, SignEncrypt: true, SensitiveDataOrigin: true, FixedTPM: true, FixedParent: true},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{Scheme: tpm2.TPMTKeyedHashScheme{
			Scheme: tpm2.TPMAlgHMAC, Details: tpm2.NewTPMUSchemeKeyedHash(tpm2.TPMAlgHMAC, &tpm2.TPMSSchemeHMAC{HashAlg: tpm2.TPMAlgSHA256})}}),
	}
	k, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		InSensitive:   tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{UserAuth: tpm2.TPM2BAuth{Buffer: []byte("right")}}},
		InPublic:      tpm2.New2B(tmpl),
	}.Execute(tr)
	if err != nil {
		t.Fatalf("create a DA-protected key: %v", err)
	}
	defer tpm2.FlushContext{FlushHandle: k.ObjectHandle}.Execute(tr)
	for i := 0; i < 100; i++ {
		_, err := tpm2.Hmac{Handle: tpm2.AuthHandle{Handle: k.ObjectHandle, Name: k.Name, Auth: tpm2.PasswordAuth([]byte("wrong"))},
			Buffer: tpm2.TPM2BMaxBuffer{Buffer: []byte("x")}, HashAlg: tpm2.TPMAlgSHA256}.Execute(tr)
		if errors.Is(err, tpm2.TPMRCLockout) {
			t.Logf("TPM locked out after %d wrong passwords", i)
			return
		}
		if !errors.Is(err, tpm2.TPMRCAuthFail) && !errors.Is(err, tpm2.TPMRCBadAuth) {
			t.Fatalf("wrong password %d: %v", i, err)
		}
	}
	t.Fatal("the TPM did not lock out after 100 wrong passwords")
}

func TestLockedOutTPMExplainsDictionaryAttackLockout(t *testing.T) {
	testenv.RequireRoot(t)
	s := testenv.StartSwtpm(t)
	tp := openSwtpm(t, s)
	ctx := context.Background()
	if err := tp.ImportAuthKey(ctx, sealFor(t, tp, bytes.Repeat([]byte{9}, 32))); err != nil {
		t.Fatal(err)
	}
	if _, err := tp.Sign(ctx, []byte("before")); err != nil {
		t.Fatal(err)
	}
	lockOut(t, tp)
	_, err := tp.Sign(ctx, []byte("during lockout"))
	wantErr(t, "Sign on a locked-out TPM", err, fault.Unavailable, "dictionary-attack lockout", "TPM_RC_LOCKOUT", "tpm2_dictionarylockout --clear-lockout")
}
