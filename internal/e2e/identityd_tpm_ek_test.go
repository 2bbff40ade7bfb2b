package e2e_test

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgev2/edgev2/internal/labcloud/dps"
	"github.com/edgev2/edgev2/internal/testenv"
)

// The expected ids here are computed without the product's EK code: the
// certificate is read and the EKs are made with tpm2-tools, the TPM2B_PUBLIC
// is written out from the TCG EK Credential Profile by hand, and the id is
// the Azure IoT SDKs' lower(base32(SHA-256(TPM2B_PUBLIC))) without '='.

// tpm2Tool runs a tpm2-tools command against the swtpm and returns its stdout.
func tpm2Tool(t *testing.T, sw *testenv.Swtpm, name string, args ...string) []byte {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		testenv.Missing(t, name, name+" is not on PATH (Debian package tpm2-tools)")
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "TPM2TOOLS_TCTI="+sw.TCTI)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, errb.String())
	}
	return out.Bytes()
}

func sdkRegistrationID(tpm2bPublic []byte) string {
	sum := sha256.Sum256(tpm2bPublic)
	return strings.ToLower(strings.TrimRight(base32.StdEncoding.EncodeToString(sum[:]), "="))
}

// tcgEKPublic is the TPM2B_PUBLIC of the EK the TCG EK Credential Profile
// 2.0 template L-1 makes, for the RSA-2048 modulus n.
func tcgEKPublic(n []byte) []byte {
	var b bytes.Buffer
	u16 := func(v uint16) { binary.Write(&b, binary.BigEndian, v) }
	u16(0x0001)                                            // type TPM_ALG_RSA
	u16(0x000b)                                            // nameAlg TPM_ALG_SHA256
	binary.Write(&b, binary.BigEndian, uint32(0x000300b2)) // fixedTPM|fixedParent|sensitiveDataOrigin|adminWithPolicy|restricted|decrypt
	u16(32)                                                // authPolicy: PolicySecret(TPM_RH_ENDORSEMENT)
	b.Write([]byte{0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24,
		0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa})
	u16(0x0006)                                   // symmetric AES
	u16(128)                                      // 128 bits
	u16(0x0043)                                   // CFB
	u16(0x0010)                                   // scheme TPM_ALG_NULL
	u16(2048)                                     // keyBits
	binary.Write(&b, binary.BigEndian, uint32(0)) // exponent: default 65537
	u16(uint16(len(n)))
	b.Write(n)
	return append(binary.BigEndian.AppendUint16(nil, uint16(b.Len())), b.Bytes()...)
}

// certifiedEK reads the RSA EK certificate from NV 0x01c00002 with
// tpm2_nvread and returns its key, its PEM and the id the TCG EK with
// that key has.
func certifiedEK(t *testing.T, sw *testenv.Swtpm) (string, string) {
	t.Helper()
	der := tpm2Tool(t, sw, "tpm2_nvread", "0x01c00002")
	var raw asn1.RawValue
	if _, err := asn1.Unmarshal(der, &raw); err != nil {
		t.Fatalf("NV 0x01c00002 holds no DER certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(raw.FullBytes)
	if err != nil {
		t.Fatal(err)
	}
	k, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok || k.E != 65537 {
		t.Fatalf("EK certificate key %T", cert.PublicKey)
	}
	spki, _ := x509.MarshalPKIXPublicKey(k)
	return sdkRegistrationID(tcgEKPublic(k.N.FillBytes(make([]byte, 256)))), string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}))
}

// azureSDKEK creates the EK from the Azure IoT SDKs' template, written out
// for tpm2_createprimary (azure-iot-sdk-c hsm_client_tpm.c GetEkTemplate:
// RSA 2048, AES-128-CFB, NULL scheme, the EK policy, empty unique) and
// returns its TPM2B_PUBLIC.
func azureSDKEK(t *testing.T, sw *testenv.Swtpm) []byte {
	t.Helper()
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy")
	os.WriteFile(policy, []byte{0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24,
		0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa}, 0o600)
	ctxFile, pubFile := filepath.Join(dir, "ek.ctx"), filepath.Join(dir, "ek.pub")
	tpm2Tool(t, sw, "tpm2_createprimary", "-C", "e", "-g", "sha256", "-G", "rsa2048:null:aes128cfb",
		"-a", "fixedtpm|fixedparent|sensitivedataorigin|adminwithpolicy|restricted|decrypt", "-L", policy, "-c", ctxFile)
	tpm2Tool(t, sw, "tpm2_readpublic", "-c", ctxFile, "-o", pubFile)
	tpm2Tool(t, sw, "tpm2_flushcontext", "-t")
	pub, err := os.ReadFile(pubFile)
	if err != nil || len(pub) < 2 || int(binary.BigEndian.Uint16(pub)) != len(pub)-2 {
		t.Fatalf("tpm2_readpublic wrote no TPM2B_PUBLIC: %v %x", err, pub)
	}
	return pub
}

// persistedID is the id of the EK at 0x81010001, read by tpm2-tools.
func persistedID(t *testing.T, sw *testenv.Swtpm) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "ek.pub")
	tpm2Tool(t, sw, "tpm2_readpublic", "-c", "0x81010001", "-o", f)
	b, _ := os.ReadFile(f)
	return sdkRegistrationID(b)
}

func TestIdentitydRegistrationIDFollowsTheEKCertificateAndStaysPut(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	// Three TPMs as makers ship many: EK certificate in NV, no EK persisted.
	certified, ownerLocked, azure := testenv.StartSwtpm(t), testenv.StartSwtpm(t), testenv.StartSwtpm(t)
	for _, sw := range []*testenv.Swtpm{certified, ownerLocked, azure} {
		tpm2Tool(t, sw, "tpm2_evictcontrol", "-C", "o", "-c", "0x81010001")
	}
	tpm2Tool(t, ownerLocked, "tpm2_changeauth", "-c", "o", "owner-secret")
	certID, certPEM := certifiedEK(t, certified)
	lockedID, lockedPEM := certifiedEK(t, ownerLocked)
	azurePub := azureSDKEK(t, azure)
	azureID := sdkRegistrationID(azurePub)
	if azureCertID, _ := certifiedEK(t, azure); azureCertID == azureID {
		t.Fatal("the Azure SDK template gave the certified (TCG) EK; the test would prove nothing")
	}

	w.stopCloud()
	w.cloudCfg.DPS.Enrollments = append(w.cloudCfg.DPS.Enrollments,
		// Enrolled from the maker's EK certificate (the PEM public key).
		dps.Enrollment{RegistrationID: certID, Attestation: dps.AttestationTPM, EndorsementKey: certPEM},
		dps.Enrollment{RegistrationID: lockedID, Attestation: dps.AttestationTPM, EndorsementKey: lockedPEM},
		// Enrolled with Azure's tooling: the SDK's EK.
		dps.Enrollment{RegistrationID: azureID, Attestation: dps.AttestationTPM, EndorsementKey: base64.StdEncoding.EncodeToString(azurePub)})
	w.startCloud(t)

	provisionedAs := func(t *testing.T, home, provisioning, wantID string) (log string) {
		t.Helper()
		w.startIdentityd(t, home, provisioning)
		w.waitState(t, "provisioned", 60*time.Second)
		info, _ := w.id.ProvisioningInfo(ctx)
		if got := info.RegistrationID; got != wantID {
			t.Fatalf("identityd provisioned as %q; want %q", got, wantID)
		}
		log = w.identityd.Output()
		w.identityd.Stop(t) // the swtpm socket serves one client at a time
		w.identityd = nil
		return log
	}

	t.Run("TheIDIsTheCertifiedEKsAndIsPersisted", func(t *testing.T) {
		log := provisionedAs(t, "ek-cert-1", tpmProvisioning(w, certified.Addr, ""), certID)
		if !strings.Contains(log, "endorsement key persisted at 0x81010001") || !strings.Contains(log, "ek_certificate=matches") {
			t.Fatalf("identityd's log does not say it persisted the certified EK:\n%s", log)
		}
		if got := persistedID(t, certified); got != certID {
			t.Fatalf("0x81010001 holds the EK of id %s; want the certified one %s", got, certID)
		}
	})
	t.Run("ARestartFromScratchFindsTheSameID", func(t *testing.T) {
		provisionedAs(t, "ek-cert-2", tpmProvisioning(w, certified.Addr, ""), certID)
	})
	t.Run("AnOwnerAuthIdentitydLacksIsNamedThenTheIDIsTheCertifiedOne", func(t *testing.T) {
		// identityd needs the owner for the SRK, the EK and the DPS key.
		w.startIdentityd(t, "ek-locked-1", tpmProvisioning(w, ownerLocked.Addr, ""))
		last := w.waitFailed(t, 30*time.Second, "owner hierarchy", "[tpm.hierarchy_authorization] owner")
		t.Logf("owner auth missing: %s", last)
		w.identityd.Stop(t)
		w.identityd = nil
		provisionedAs(t, "ek-locked-2", tpmProvisioning(w, ownerLocked.Addr, "")+"[tpm.hierarchy_authorization]\nowner = \"owner-secret\"\n", lockedID)
		if got := persistedID(t, ownerLocked); got != lockedID {
			t.Fatalf("0x81010001 holds the EK of id %s; want the certified one %s", got, lockedID)
		}
	})
	t.Run("AzureSDKTemplateGivesTheSDKsIDAndPersistsIt", func(t *testing.T) {
		log := provisionedAs(t, "ek-azure-1", tpmProvisioning(w, azure.Addr, "")+"ek_template = \"azure-sdk\"\n", azureID)
		if !strings.Contains(log, "ek_template=azure-sdk") || !strings.Contains(log, "ek_certificate=differs") || strings.Contains(log, "level=WARN") {
			t.Fatalf("identityd's log for the chosen azure-sdk EK:\n%s", log)
		}
		if got := persistedID(t, azure); got != azureID {
			t.Fatalf("0x81010001 holds the EK of id %s; want the Azure SDK's %s", got, azureID)
		}
		// From now on the persisted EK is used whatever the template says,
		// as the Azure SDKs themselves do.
		provisionedAs(t, "ek-azure-2", tpmProvisioning(w, azure.Addr, ""), azureID)
	})
}
