package superconfig

import "testing"

func TestLineIndexFindsKeysInTablesArraysAndInlineTables(t *testing.T) {
	idx := indexLines([]byte(`hostname = "h"
[provisioning]
source = "dps"
attestation.method = "tpm"
[[principal]]
user = "a"
[[principal]]
user = "b"
sub = { x = 1, y = { z = 2 } }
[principal.extra]
k = 1
[cert_issuance.certs."a.b"]
method = "est"
`))
	cases := []struct {
		key  string
		line int
	}{
		{"hostname", 1},
		{"provisioning", 2},
		{"provisioning.source", 3},
		{"provisioning.attestation.method", 4},
		{"provisioning.attestation", 4}, // its first key
		{"provisioning.id_scope", 2},    // missing: its table
		{"principal[0]", 5},
		{"principal[0].user", 6},
		{"principal[0].keys[3]", 5}, // missing: its entry's header
		{"principal[1].user", 8},
		{"principal[1].sub.y.z", 9},
		{"principal[1].extra.k", 11},
		{"cert_issuance.certs.a.b.method", 13},
		{"nothing.here", 0},
		{"", 0},
	}
	for _, tc := range cases {
		if got := idx.line(tc.key); got != tc.line {
			t.Errorf("line(%q) = %d, want %d", tc.key, got, tc.line)
		}
	}
}
