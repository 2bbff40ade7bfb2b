package e2e_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/edgev2/edgev2/internal/labcloud/dps"
	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/internal/tpm"
)

// readEK reads a TPM's EK as DPS enrollments take it.
func readEK(t *testing.T, s *testenv.Swtpm) []byte {
	t.Helper()
	ctx := context.Background()
	tp, err := tpm.Open(ctx, tpm.Config{Address: s.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	ek, err := tp.ReadEKPublic(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return ek.Marshalled
}

func tpmProvisioning(w *world, tpmAddr, regID string) string {
	text := fmt.Sprintf("[provisioning]\nsource = \"dps\"\nglobal_endpoint = \"https://%s\"\nid_scope = \"0ne00000042\"\n[provisioning.attestation]\nmethod = \"tpm\"\n", w.hubHost)
	if regID != "" {
		text += fmt.Sprintf("registration_id = %q\n", regID)
	}
	return text + fmt.Sprintf("[tpm]\naddress = %q\n", tpmAddr)
}

// waitFailed waits until provisioning failed with an error containing all of want.
func (w *world) waitFailed(t *testing.T, timeout time.Duration, want ...string) string {
	t.Helper()
	ctx := context.Background()
	var last string
	if !testenv.WaitFor(timeout, func() bool {
		st, _ := w.id.State(ctx)
		info, _ := w.id.ProvisioningInfo(ctx)
		last = info.LastError
		if st == "provisioned" {
			t.Fatalf("identityd provisioned; want a failure saying %q", want)
		}
		ok := last != ""
		for _, s := range want {
			ok = ok && strings.Contains(last, s)
		}
		return ok
	}) {
		t.Fatalf("identityd's last error %q after %v; want one saying %q", last, timeout, want)
	}
	return last
}

func TestIdentitydProvisionsWithDPSTPMAttestationEndToEnd(t *testing.T) {
	w := newWorld(t)
	one, two := testenv.StartSwtpm(t), testenv.StartSwtpm(t)
	ek1 := readEK(t, one)
	regID := tpm.RegistrationID(ek1)
	w.stopCloud()
	w.cloudCfg.DPS.Enrollments = append(w.cloudCfg.DPS.Enrollments,
		dps.Enrollment{RegistrationID: regID, Attestation: dps.AttestationTPM, EndorsementKey: base64.StdEncoding.EncodeToString(ek1)})
	w.startCloud(t)
	ctx := context.Background()

	t.Run("EnrolledTPMProvisionsAndTheHubAcceptsItsTPMSignedSAS", func(t *testing.T) {
		// No registration_id: identityd derives it from the EK as the SDKs do.
		w.startIdentityd(t, "tpm-1", tpmProvisioning(w, one.Addr, ""))
		w.waitState(t, "provisioned", 60*time.Second)
		info, _ := w.id.ProvisioningInfo(ctx)
		if info.RegistrationID != regID || info.Method != "tpm" {
			t.Fatalf("provisioning info %v; want method tpm, registration id %s", info, regID)
		}
		checkTokens(t, w, regID, true)
		d, ok := w.cloud.Hub.Device(regID)
		if !ok || d.Authentication.SymmetricKey == nil {
			t.Fatalf("hub device %+v", d)
		}
		if out := w.identityd.Output(); strings.Contains(out, d.Authentication.SymmetricKey.PrimaryKey) {
			t.Fatal("identityd logged the DPS-issued key")
		}
	})
	// The hub knows the key DPS sealed into registrationState.tpm (not the
	// challenge's), so an accepted token also proves the re-import.
	t.Run("TheImportedKeySurvivesAnIdentitydRestart", func(t *testing.T) {
		w.startIdentityd(t, "tpm-1", tpmProvisioning(w, one.Addr, ""))
		w.waitState(t, "provisioned", 30*time.Second)
		tok, err := w.id.SasToken(ctx, "", 600)
		if err != nil {
			t.Fatal(err)
		}
		if code := w.sendAs(t, regID, "", tok); code != http.StatusNoContent {
			t.Fatalf("after a restart the hub answered %d to the TPM-signed device token", code)
		}
	})
	t.Run("AnotherTPMNotEnrolledIsRefused", func(t *testing.T) {
		w.startIdentityd(t, "tpm-2", tpmProvisioning(w, two.Addr, ""))
		last := w.waitFailed(t, 30*time.Second, tpm.RegistrationID(readEK(t, two)), "not found")
		t.Logf("TPM #2, not enrolled: %s", last)
	})
	t.Run("AnotherTPMUnderTheEnrolledRegistrationIDIsRefused", func(t *testing.T) {
		w.startIdentityd(t, "tpm-2-as-1", tpmProvisioning(w, two.Addr, regID))
		last := w.waitFailed(t, 30*time.Second, "endorsement key is not the one enrolled")
		t.Logf("TPM #2 as #1: %s", last)
	})
	t.Run("AbsentTPMNamesTheAddressAndTheFix", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		w.startIdentityd(t, "tpm-absent", tpmProvisioning(w, addr, ""))
		last := w.waitFailed(t, 30*time.Second, "TPM at "+addr, "absent", "[tpm] address")
		t.Logf("absent TPM: %s", last)
	})
	t.Run("WrongEndorsementAuthNamesTheConfigKey", func(t *testing.T) {
		w.identityd.Stop(t)
		w.identityd = nil
		setEndorsementAuth(t, one, "e-secret")
		w.startIdentityd(t, "tpm-1-eauth", tpmProvisioning(w, one.Addr, ""))
		last := w.waitFailed(t, 30*time.Second, "endorsement hierarchy", "[tpm.hierarchy_authorization] endorsement")
		t.Logf("wrong endorsement auth: %s", last)
		w.startIdentityd(t, "tpm-1-eauth", tpmProvisioning(w, one.Addr, "")+"[tpm.hierarchy_authorization]\nendorsement = \"e-secret\"\n")
		w.waitState(t, "provisioned", 60*time.Second)
		if strings.Contains(w.identityd.Output(), "e-secret") {
			t.Fatal("identityd logged the endorsement auth")
		}
	})
	t.Run("LockedOutTPMExplainsTheLockout", func(t *testing.T) {
		w.identityd.Stop(t) // the swtpm socket serves one client at a time
		w.identityd = nil
		lockOut(t, one)
		w.startIdentityd(t, "tpm-1-eauth", tpmProvisioning(w, one.Addr, "")+"[tpm.hierarchy_authorization]\nendorsement = \"e-secret\"\n")
		w.waitState(t, "provisioned", 30*time.Second) // from the cache
		_, err := w.id.SasToken(ctx, "", 600)
		if err == nil || !strings.Contains(err.Error(), "dictionary-attack lockout") || !strings.Contains(err.Error(), "tpm2_dictionarylockout") {
			t.Fatalf("device token on a locked-out TPM: %v; want the lockout explained", err)
		}
		t.Logf("locked out: %v", err)
	})
}

func setEndorsementAuth(t *testing.T, s *testenv.Swtpm, auth string) {
	t.Helper()
	tp, err := tpm.Open(context.Background(), tpm.Config{Address: s.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	_, err = tpm2.HierarchyChangeAuth{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(nil)},
		NewAuth:    tpm2.TPM2BAuth{Buffer: []byte(auth)},
	}.Execute(tp.Transport())
	if err != nil {
		t.Fatalf("set the endorsement auth: %v", err)
	}
}

// lockOut drives the TPM into dictionary-attack lockout with wrong
// passwords on a DA-protected key.
func lockOut(t *testing.T, s *testenv.Swtpm) {
	t.Helper()
	tp, err := tpm.Open(context.Background(), tpm.Config{Address: s.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	tr := tp.Transport()
	k, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		InSensitive:   tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{UserAuth: tpm2.TPM2BAuth{Buffer: []byte("right")}}},
		InPublic: tpm2.New2B(tpm2.TPMTPublic{
			Type: tpm2.TPMAlgKeyedHash, NameAlg: tpm2.TPMAlgSHA256,
			ObjectAttributes: tpm2.TPMAObject{UserWithAuth: true, SignEncrypt: true, SensitiveDataOrigin: true, FixedTPM: true, FixedParent: true},
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{Scheme: tpm2.TPMTKeyedHashScheme{
				Scheme: tpm2.TPMAlgHMAC, Details: tpm2.NewTPMUSchemeKeyedHash(tpm2.TPMAlgHMAC, &tpm2.TPMSSchemeHMAC{HashAlg: tpm2.TPMAlgSHA256})}}),
		}),
	}.Execute(tr)
	if err != nil {
		t.Fatal(err)
	}
	defer tpm2.FlushContext{FlushHandle: k.ObjectHandle}.Execute(tr)
	for i := 0; i < 100; i++ {
		_, err := tpm2.Hmac{Handle: tpm2.AuthHandle{Handle: k.ObjectHandle, Name: k.Name, Auth: tpm2.PasswordAuth([]byte("wrong"))},
			Buffer: tpm2.TPM2BMaxBuffer{Buffer: []byte("x")}, HashAlg: tpm2.TPMAlgSHA256}.Execute(tr)
		if errors.Is(err, tpm2.TPMRCLockout) {
			return
		}
	}
	t.Fatal("the TPM did not lock out")
}
