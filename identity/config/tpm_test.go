package config

import (
	"encoding/json"
	"strings"
	"testing"
)

const tpmBase = `homedir = "/h"
[provisioning]
source = "dps"
id_scope = "0ne00000001"
[provisioning.attestation]
method = "tpm"
`

func TestAnotherTPMIsAnotherCacheFingerprint(t *testing.T) {
	a, err := ParseConfig("a", []byte(tpmBase+"[tpm]\naddress = \"127.0.0.1:1\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ParseConfig("b", []byte(tpmBase+"[tpm]\naddress = \"127.0.0.1:2\"\n"))
	if a.Fingerprint() == b.Fingerprint() {
		t.Fatal("two TPMs share a cache fingerprint")
	}
	c, _ := ParseConfig("c", []byte(tpmBase+"[tpm]\naddress = \"127.0.0.1:1\"\n[tpm.hierarchy_authorization]\nowner = \"x\"\n"))
	if a.Fingerprint() != c.Fingerprint() {
		t.Fatal("a hierarchy password change invalidates the cache")
	}
	if j, _ := json.Marshal(c.TPM); strings.Contains(string(j), `"x"`) {
		t.Fatal("hierarchy auth would be written to the cache or logs")
	}
}
