package main

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"

	certsconfig "github.com/edgev2/edgev2/certs/config"
)

func TestCheckSaysWhenRenewalIsPacedBelowTheThreshold(t *testing.T) {
	cfg, err := certsconfig.Parse("certd.toml", []byte(`homedir = "/var/lib/edgev2/certd"
[cert_issuance.capped]
method = "est"
url = "https://est.example/.well-known/est"
[cert_issuance.capped.auto_renew]
threshold = "10d"
[cert_issuance.normal]
method = "est"
url = "https://est.example/.well-known/est"
[cert_issuance.normal.auto_renew]
threshold = "1d"
`))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	leaf := &x509.Certificate{NotBefore: now, NotAfter: now.Add(24 * time.Hour)} // what a capping CA issued
	tests := []struct {
		id     string
		leaf   *x509.Certificate
		paced  bool
		reason string
	}{
		{"capped", leaf, true, "a 1-day certificate under a 10-day threshold"},
		{"normal", &x509.Certificate{NotBefore: now, NotAfter: now.Add(30 * 24 * time.Hour)}, false, "30 days under a 1-day threshold"},
		{"unmanaged", leaf, false, "no policy"},
	}
	for _, tt := range tests {
		k := &checker{cfg: deviceConfigs{certd: cfg}}
		k.checkPacing(tt.id, tt.leaf)
		if !tt.paced {
			if len(k.results) != 0 {
				t.Errorf("%s (%s): %+v, want nothing", tt.id, tt.reason, k.results)
			}
			continue
		}
		if len(k.results) != 1 {
			t.Fatalf("%s (%s): %+v, want one warning", tt.id, tt.reason, k.results)
		}
		r := k.results[0]
		if r.Name != "certs.renewal.capped" || r.Status != statusWarning || !strings.Contains(r.Message, "50% of its lifetime") ||
			!strings.Contains(r.Message, "1m0s") || !strings.Contains(r.Fix, "threshold") {
			t.Fatalf("%s: %+v", tt.id, r)
		}
	}
}
