package identity

import (
	"errors"
	"testing"

	"github.com/edgev2/edgev2/identity/config"
	"github.com/edgev2/edgev2/internal/tpm"
	"github.com/edgev2/edgev2/internal/tpm/ek"
)

const tpmBase = `homedir = "/h"
[provisioning]
source = "dps"
id_scope = "0ne00000001"
[provisioning.attestation]
method = "tpm"
`

// The parser (identity/config) and the TPM package agree on [tpm]: what
// one accepts, the other opens as meant.
func TestTPMConfigKeysAndDefaults(t *testing.T) {
	for _, tc := range []struct {
		name, text, key string // key "" = valid
		want            tpm.Config
	}{
		{"defaults", tpmBase, "", tpm.Config{AuthKeyHandle: tpm.DefaultAuthKeyHandle}},
		{"swtpm address and handle", tpmBase + `[tpm]
address = "127.0.0.1:2321"
auth_key_handle = "0x81000200"`, "", tpm.Config{Address: "127.0.0.1:2321", AuthKeyHandle: 0x81000200}},
		{"device and hierarchy auth", tpmBase + `[tpm]
device = "/dev/tpmrm1"
[tpm.hierarchy_authorization]
endorsement = "e"
owner = "o"`, "", tpm.Config{Device: "/dev/tpmrm1", AuthKeyHandle: tpm.DefaultAuthKeyHandle, EndorsementAuth: []byte("e"), OwnerAuth: []byte("o")}},
		{"azure sdk EK template", tpmBase + `[tpm]
ek_template = "azure-sdk"`, "", tpm.Config{AuthKeyHandle: tpm.DefaultAuthKeyHandle, EKTemplate: ek.AzureSDK}},
		{"tcg EK template", tpmBase + `[tpm]
ek_template = "tcg"`, "", tpm.Config{AuthKeyHandle: tpm.DefaultAuthKeyHandle, EKTemplate: ek.TCG}},
		{"unknown EK template", tpmBase + `[tpm]
ek_template = "tss"`, "tpm.ek_template", tpm.Config{}},
		{"both device and address", tpmBase + `[tpm]
device = "/dev/tpmrm0"
address = "127.0.0.1:2321"`, "tpm.address", tpm.Config{}},
		{"relative device", tpmBase + `[tpm]
device = "tpmrm0"`, "tpm.device", tpm.Config{}},
		{"address without port", tpmBase + `[tpm]
address = "localhost"`, "tpm.address", tpm.Config{}},
		{"transient handle", tpmBase + `[tpm]
auth_key_handle = "0x80000001"`, "tpm.auth_key_handle", tpm.Config{}},
		{"the SRK's handle", tpmBase + `[tpm]
auth_key_handle = "0x81000001"`, "tpm.auth_key_handle", tpm.Config{}},
		{"not a number", tpmBase + `[tpm]
auth_key_handle = "idkey"`, "tpm.auth_key_handle", tpm.Config{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := config.ParseConfig("identityd.toml", []byte(tc.text))
			if tc.key != "" {
				var ce *config.ConfigError
				if !errors.As(err, &ce) || ce.Key != tc.key {
					t.Fatalf("error %v; want one naming %s", err, tc.key)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := tpmConfig(&c.TPM)
			if got.Device != tc.want.Device || got.Address != tc.want.Address || got.AuthKeyHandle != tc.want.AuthKeyHandle || got.EKTemplate != tc.want.EKTemplate ||
				string(got.EndorsementAuth) != string(tc.want.EndorsementAuth) || string(got.OwnerAuth) != string(tc.want.OwnerAuth) {
				t.Fatalf("tpm config %+v, want %+v", got, tc.want)
			}
		})
	}
}
