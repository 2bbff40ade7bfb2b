package ek_test

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/internal/testpki"
	"github.com/edgev2/edgev2/internal/tpm"
	"github.com/edgev2/edgev2/internal/tpm/ek"
)

// freshTPM is a swtpm as a maker ships many TPMs: the RSA EK certificate
// in NV 0x01c00002 and no EK persisted at 0x81010001.
func freshTPM(t *testing.T) transport.TPMCloser {
	t.Helper()
	testenv.RequireRoot(t)
	sw := testenv.StartSwtpm(t)
	tr, err := tpm.OpenTransport(context.Background(), "", sw.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	evictEK(t, tr)
	return tr
}

func evictEK(t *testing.T, tr transport.TPM) {
	t.Helper()
	rp, err := tpm2.ReadPublic{ObjectHandle: ek.Handle}.Execute(tr)
	if err != nil {
		t.Fatalf("read the EK at 0x81010001: %v", err)
	}
	if _, err := (tpm2.EvictControl{Auth: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		ObjectHandle: tpm2.NamedHandle{Handle: ek.Handle, Name: rp.Name}, PersistentHandle: ek.Handle}).Execute(tr); err != nil {
		t.Fatalf("evict the EK: %v", err)
	}
}

func certKey(t *testing.T, tr transport.TPM) *rsa.PublicKey {
	t.Helper()
	k, state, err := ek.ReadCertKey(tr)
	if err != nil || state != ek.CertMatches {
		t.Fatalf("EK certificate: %v %v", state, err)
	}
	return k
}

func persisted(t *testing.T, tr transport.TPM) []byte {
	t.Helper()
	rp, err := tpm2.ReadPublic{ObjectHandle: ek.Handle}.Execute(tr)
	if err != nil {
		t.Fatalf("nothing persisted at 0x81010001: %v", err)
	}
	return tpm2.Marshal(rp.OutPublic)
}

func TestFindCreatesTheCertifiedEKPersistsItAndKeepsItsID(t *testing.T) {
	tr := freshTPM(t)
	k, err := ek.Find(tr, ek.Options{Persist: true})
	if err != nil {
		t.Fatal(err)
	}
	if k.Template != ek.TCG || k.Cert != ek.CertMatches || !k.Persisted || !k.Persistent || k.Handle != ek.Handle || k.PersistErr != nil {
		t.Fatalf("EK %+v; want the TCG one, matching the certificate, persisted at 0x81010001", k)
	}
	if !ek.SameKey(&k.Public, certKey(t, tr)) {
		t.Fatal("the EK is not the certificate's key")
	}
	if !bytes.Equal(persisted(t, tr), k.Marshalled) {
		t.Fatal("0x81010001 holds another key than the one Find returned")
	}
	again, err := ek.Find(tr, ek.Options{Persist: true, Identify: true})
	if err != nil {
		t.Fatal(err)
	}
	if again.RegistrationID() != k.RegistrationID() || !again.Persistent || again.Persisted || again.Template != ek.TCG || !again.Identified {
		t.Fatalf("second Find %+v (id %s); want the persisted TCG EK, id %s", again, again.RegistrationID(), k.RegistrationID())
	}
}

func TestFindAzureSDKTemplateGivesAnotherEKThanTheCertificate(t *testing.T) {
	tr := freshTPM(t)
	tcg, err := ek.Find(tr, ek.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tpm2.FlushContext{FlushHandle: tcg.Handle}.Execute(tr)
	az, err := ek.Find(tr, ek.Options{Template: ek.AzureSDK, Persist: true})
	if err != nil {
		t.Fatal(err)
	}
	if az.Template != ek.AzureSDK || az.Cert != ek.CertDiffers || !az.Persisted {
		t.Fatalf("EK %+v; want the azure-sdk one, not the certificate's, persisted", az)
	}
	if az.RegistrationID() == tcg.RegistrationID() {
		t.Fatal("the two templates gave the same key")
	}
	// Once persisted it is what everyone finds, whatever they would create.
	k, err := ek.Find(tr, ek.Options{Template: ek.TCG, Identify: true})
	if err != nil {
		t.Fatal(err)
	}
	if k.RegistrationID() != az.RegistrationID() || k.Template != ek.AzureSDK || k.Cert != ek.CertDiffers {
		t.Fatalf("after the persist: %+v; want the persisted azure-sdk EK", k)
	}
}

// A maker that certified the Azure SDK template's key: Auto follows the
// certificate, not the TCG default.
func TestFindAutoFollowsTheCertificatesTemplate(t *testing.T) {
	tr := freshTPM(t)
	az, err := ek.Find(tr, ek.Options{Template: ek.AzureSDK})
	if err != nil {
		t.Fatal(err)
	}
	tpm2.FlushContext{FlushHandle: az.Handle}.Execute(tr)
	u, _ := az.Public.Unique.RSA()
	replaceEKCert(t, tr, &rsa.PublicKey{N: new(big.Int).SetBytes(u.Buffer), E: 65537})

	k, err := ek.Find(tr, ek.Options{Persist: true})
	if err != nil {
		t.Fatal(err)
	}
	if k.Template != ek.AzureSDK || k.Cert != ek.CertMatches || k.RegistrationID() != az.RegistrationID() {
		t.Fatalf("EK %+v; want the azure-sdk EK the certificate names", k)
	}
}

func TestFindKeepsTheEKTransientWhenTheOwnerRefuses(t *testing.T) {
	tr := freshTPM(t)
	if _, err := (tpm2.HierarchyChangeAuth{AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		NewAuth: tpm2.TPM2BAuth{Buffer: []byte("owner-secret")}}).Execute(tr); err != nil {
		t.Fatal(err)
	}
	k, err := ek.Find(tr, ek.Options{Persist: true})
	if err != nil {
		t.Fatal(err)
	}
	var se *ek.StepError
	if k.Persistent || k.PersistErr == nil || !errors.As(k.PersistErr, &se) || se.Hierarchy != ek.Owner || !errors.Is(k.PersistErr, tpm2.TPMRCBadAuth) {
		t.Fatalf("EK %+v, persist error %v; want it transient with the owner's refusal", k, k.PersistErr)
	}
	tpm2.FlushContext{FlushHandle: k.Handle}.Execute(tr)
	k2, err := ek.Find(tr, ek.Options{Persist: true, OwnerAuth: []byte("owner-secret")})
	if err != nil {
		t.Fatal(err)
	}
	if !k2.Persisted || k2.RegistrationID() != k.RegistrationID() {
		t.Fatalf("with the owner auth: %+v; want the same EK persisted", k2)
	}
}

func TestFindNamesTheEndorsementHierarchyWhenItsAuthIsWrong(t *testing.T) {
	tr := freshTPM(t)
	_, err := ek.Find(tr, ek.Options{EndorsementAuth: []byte("wrong")})
	var se *ek.StepError
	if !errors.As(err, &se) || se.Hierarchy != ek.Endorsement {
		t.Fatalf("Find with a wrong endorsement auth: %v; want a step error on the endorsement hierarchy", err)
	}
}

// replaceEKCert puts a certificate for key into NV 0x01c00002 in place of
// the maker's (swtpm's platform auth is empty).
func replaceEKCert(t *testing.T, tr transport.TPM, key *rsa.PublicKey) {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "test EK"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageKeyEncipherment}
	der := testpki.SignDER(t, tmpl, tmpl, key, testpki.NewKey(t))
	platform := tpm2.AuthHandle{Handle: tpm2.TPMRHPlatform, Auth: tpm2.PasswordAuth(nil)}
	rp, err := tpm2.NVReadPublic{NVIndex: ek.CertNV}.Execute(tr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (tpm2.NVUndefineSpace{AuthHandle: platform, NVIndex: tpm2.NamedHandle{Handle: ek.CertNV, Name: rp.NVName}}).Execute(tr); err != nil {
		t.Fatalf("undefine the EK certificate index: %v", err)
	}
	pub := tpm2.TPMSNVPublic{NVIndex: ek.CertNV, NameAlg: tpm2.TPMAlgSHA256, DataSize: uint16(len(der)),
		Attributes: tpm2.TPMANV{PPWrite: true, PPRead: true, OwnerRead: true, AuthRead: true, NoDA: true, PlatformCreate: true, NT: tpm2.TPMNTOrdinary}}
	if _, err := (tpm2.NVDefineSpace{AuthHandle: platform, PublicInfo: tpm2.New2B(pub)}).Execute(tr); err != nil {
		t.Fatalf("define the EK certificate index: %v", err)
	}
	rp, err = tpm2.NVReadPublic{NVIndex: ek.CertNV}.Execute(tr)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(der); off += 512 {
		end := min(off+512, len(der))
		if _, err := (tpm2.NVWrite{AuthHandle: platform, NVIndex: tpm2.NamedHandle{Handle: ek.CertNV, Name: rp.NVName},
			Data: tpm2.TPM2BMaxNVBuffer{Buffer: der[off:end]}, Offset: uint16(off)}).Execute(tr); err != nil {
			t.Fatalf("write the EK certificate: %v", err)
		}
	}
}
