// Package ek finds a TPM's RSA endorsement key the way DPS enrollment
// tools will see it, and derives the DPS registration id from it.
package ek

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"strings"

	"github.com/google/go-tpm/tpm2"
)

// Template names the EK template a key is created from when the TPM has
// no EK persisted at Handle. Both make an RSA-2048 restricted decryption
// key under the endorsement hierarchy with the same policy; they differ
// only in the unique field, which seeds the key derivation, so the same
// TPM gives two different EKs and two different registration ids.
type Template string

const (
	// Auto is the template whose key is the one in the TPM's EK
	// certificate (NV 0x01c00002), TCG when there is no certificate.
	Auto Template = ""
	// TCG is the TCG EK Credential Profile 2.0 template L-1 (RSA 2048):
	// unique = 256 zero bytes. What TPM makers certify, tpm2_createek,
	// swtpm_setup and aziot-tpmd use.
	TCG Template = "tcg"
	// AzureSDK is the Azure IoT SDKs' own template: the same as L-1 but
	// with an empty unique field. azure-iot-sdk-c
	// provisioning_client/adapters/hsm_client_tpm.c GetEkTemplate()
	// ("{ 0 } // TPMU_PUBLIC_ID unique") and azure-iot-sdk-node
	// provisioning/security/tpm TpmSecurityClient._ekTemplate
	// ("new tss.TPM2B_PUBLIC_KEY_RSA()"), both created with
	// CreatePrimary(TPM_RH_ENDORSEMENT) and persisted at 0x81010001 with
	// EvictControl(TPM_RH_OWNER) when that handle is empty.
	AzureSDK Template = "azure-sdk"
)

// Templates are the known templates, in the order Auto tries them.
var Templates = []Template{TCG, AzureSDK}

// ParseTemplate reads an ek_template value; "" and "auto" are Auto.
func ParseTemplate(s string) (Template, error) {
	switch Template(strings.ToLower(strings.TrimSpace(s))) {
	case Auto, "auto":
		return Auto, nil
	case TCG:
		return TCG, nil
	case AzureSDK:
		return AzureSDK, nil
	}
	return Auto, fmt.Errorf("%q is not an EK template; use \"tcg\" (TCG EK Credential Profile, what TPM makers certify) or \"azure-sdk\" (the Azure IoT SDKs' template, for fleets enrolled with Azure's tooling)", s)
}

// String is the name for messages; Auto reads "auto".
func (t Template) String() string {
	if t == Auto {
		return "auto"
	}
	return string(t)
}

// ekPolicy is TPM2_PolicySecret(TPM_RH_ENDORSEMENT), the EK's authPolicy
// in both templates (TCG EK Credential Profile 2.0, B.3.3).
var ekPolicy = []byte{
	0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8,
	0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24,
	0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64,
	0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
}

// Public is the template's public area for CreatePrimary.
func (t Template) Public() tpm2.TPMTPublic {
	unique := make([]byte, 256) // TCG L-1: 256 zero bytes
	if t == AzureSDK {
		unique = nil // the SDKs' empty TPM2B_PUBLIC_KEY_RSA
	}
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgRSA,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM:            true,
			FixedParent:         true,
			SensitiveDataOrigin: true,
			AdminWithPolicy:     true,
			Restricted:          true,
			Decrypt:             true,
		},
		AuthPolicy: tpm2.TPM2BDigest{Buffer: append([]byte(nil), ekPolicy...)},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
			Symmetric: tpm2.TPMTSymDefObject{
				Algorithm: tpm2.TPMAlgAES,
				KeyBits:   tpm2.NewTPMUSymKeyBits(tpm2.TPMAlgAES, tpm2.TPMKeyBits(128)),
				Mode:      tpm2.NewTPMUSymMode(tpm2.TPMAlgAES, tpm2.TPMAlgCFB),
			},
			Scheme:   tpm2.TPMTRSAScheme{Scheme: tpm2.TPMAlgNull},
			KeyBits:  2048,
			Exponent: 0,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: unique}),
	}
}

// RegistrationID is the DPS registration id the Azure IoT SDKs derive
// from an EK: SHA-256 of its TPM2B_PUBLIC (as the TPM returns it, unique
// = the modulus), base32 (RFC 4648) in lower case without '=' padding
// (azure-iot-sdk-node security/tpm/src/tpm.ts getRegistrationId;
// azure-iot-sdk-c prov_auth_client).
func RegistrationID(ekTPM2BPublic []byte) string {
	sum := sha256.Sum256(ekTPM2BPublic)
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:]))
}
