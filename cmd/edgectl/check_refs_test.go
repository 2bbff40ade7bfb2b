package main

import (
	"testing"

	certsconfig "github.com/edgev2/edgev2/certs/config"
	rtconfig "github.com/edgev2/edgev2/modrt/config"
)

// TestReferencesNameEachKeyCertificatePairOnce: the edge CA is named by
// certd (it issues it) and by modrtd (it uses it); check must report it
// once, naming both places, not twice.
func TestReferencesNameEachKeyCertificatePairOnce(t *testing.T) {
	cfg := deviceConfigs{
		certd:  &certsconfig.Config{Issuance: map[string]*certsconfig.Issuance{"edge-ca": {KeyID: "edge-ca"}, "device-cert": {KeyID: "device-id"}}},
		modrtd: &rtconfig.Config{EdgeCACert: "edge-ca", EdgeCAKey: "edge-ca"},
	}
	refs := cfg.references()
	seen := map[keyRef]int{}
	var edge keyRef
	for _, r := range refs {
		seen[keyRef{key: r.key, cert: r.cert}]++
		if r.cert == "edge-ca" {
			edge = r
		}
	}
	for r, n := range seen {
		if n != 1 {
			t.Errorf("%+v listed %d times", r, n)
		}
	}
	if len(refs) != 2 || edge.where != "certd.toml cert_issuance.edge-ca, modrtd.toml edge_ca_key" {
		t.Fatalf("references: %+v", refs)
	}
}
