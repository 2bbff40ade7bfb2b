package config

import (
	"strings"
	"testing"
	"time"
)

func TestParseSpan(t *testing.T) {
	tests := []struct {
		in   string
		life time.Duration
		want time.Duration
		ok   bool
	}{
		{"80%", 100 * time.Second, 80 * time.Second, true},
		{"10d", 0, 240 * time.Hour, true},
		{"30min", 0, 30 * time.Minute, true},
		{"90s", 0, 90 * time.Second, true},
		{"0%", 0, 0, false},
		{"150%", 0, 0, false},
		{"-5d", 0, 0, false},
		{"soon", 0, 0, false},
		{"", 0, 0, false},
	}
	for _, tt := range tests {
		s, err := parseSpan(tt.in)
		if (err == nil) != tt.ok || (tt.ok && s.Of(tt.life) != tt.want) {
			t.Errorf("parseSpan(%q) = %v, %v; want %v ok=%v", tt.in, s.Of(tt.life), err, tt.want, tt.ok)
		}
	}
}

func TestCABindingsMustAgree(t *testing.T) {
	for name, text := range map[string]string{
		"two keys":   "[local_ca.ca]\nkey = \"a\"\n[cert_issuance.ca]\nmethod = \"self_signed\"\nca = true\nkey_id = \"b\"\n",
		"issuer_key": "[local_ca.ca]\nkey = \"a\"\n[cert_issuance.x]\nmethod = \"local_ca\"\nissuer_cert = \"ca\"\nissuer_key = \"b\"\n",
		"unbound":    "[cert_issuance.x]\nmethod = \"local_ca\"\nissuer_cert = \"ca\"\n",
		"no key":     "[local_ca.ca]\n",
	} {
		if _, err := Parse("certd.toml", []byte("homedir = \"/var/lib/edgev2/certd\"\n"+text)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	c, err := Parse("certd.toml", []byte("homedir = \"/x\"\n[local_ca.ca]\nkey = \"a\"\n[cert_issuance.x]\nmethod = \"local_ca\"\nissuer_cert = \"ca\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := c.CAKey("ca"); !ok || k != "a" {
		t.Fatalf("CAKey(ca) = %q, %v", k, ok)
	}
}

// A URL mistyped so that user:password@ is not its authority ("https//",
// "https:/", no scheme) still parses, with the password in its path or
// opaque part: the refusal says what is wrong without showing it.
func TestCheckHTTPSNeverShowsAPasswordOutsideTheAuthority(t *testing.T) {
	for _, raw := range []string{
		"https//factory:a2V5@est.example/.well-known/est",
		"https:/factory:a2V5@est.example",
		"https:factory:a2V5@est.example",
		"factory:a2V5@est.example",
	} {
		err := CheckHTTPS(raw)
		if err == nil || strings.Contains(err.Error(), "a2V5") {
			t.Errorf("CheckHTTPS(%q) = %v; want a refusal that does not show the password", raw, err)
		}
	}
	if err := CheckHTTPS("http://est.example/x"); err == nil || !strings.Contains(err.Error(), "http://est.example/x") {
		t.Errorf("CheckHTTPS of a plain http URL = %v; want it shown", err)
	}
}
