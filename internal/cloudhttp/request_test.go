package cloudhttp

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/testpki"
)

func TestNewJSONRequestHeaders(t *testing.T) {
	tests := []struct {
		name            string
		body            []byte
		auth            string
		wantContentType string
	}{
		{"GET without a body has no Content-Type", nil, "", ""},
		{"PUT with a body says JSON", []byte(`{}`), "SharedAccessSignature sr=x", ContentTypeJSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := NewJSONRequest(context.Background(), "PUT", "https://h/p", tt.body, "ua/1", tt.auth)
			if err != nil {
				t.Fatal(err)
			}
			h := req.Header
			if h.Get("Accept") != AcceptJSON || h.Get("User-Agent") != "ua/1" || h.Get("Content-Type") != tt.wantContentType || h.Get("Authorization") != tt.auth {
				t.Fatalf("headers %v", h)
			}
		})
	}
	if _, err := NewJSONRequest(context.Background(), "PUT", "https://h/\x7f", nil, "ua", ""); err == nil {
		t.Fatal("a bad URL made a request")
	}
}

func TestCheckCredentials(t *testing.T) {
	key := testpki.NewKey(t)
	good := &tls.Certificate{Certificate: [][]byte{{1}}, PrivateKey: key}
	tests := []struct {
		name   string
		hasSAS bool
		cert   *tls.Certificate
		want   string // "" = accepted
	}{
		{"SAS only", true, nil, ""},
		{"certificate only", false, good, ""},
		{"neither", false, nil, `client "d" has no credentials`},
		{"both", true, good, "both a SAS signer and a client certificate"},
		{"empty certificate", false, &tls.Certificate{PrivateKey: key}, "Cloud client certificate has no certificate data"},
		{"key that cannot sign", false, &tls.Certificate{Certificate: [][]byte{{1}}, PrivateKey: "k"}, "cannot sign"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckCredentials("Cloud", `client "d"`, "credentials", tt.hasSAS, tt.cert)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && (!fault.Is(err, fault.InvalidArgs) || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("err %v, want InvalidArgs with %q", err, tt.want)
			}
		})
	}
}

func TestCheckAPIVersionAcceptsOnlyDigitsLowerCaseAndDash(t *testing.T) {
	for v, ok := range map[string]bool{
		"2021-04-12":         true,
		"2025-07-01-preview": true,
		"":                   true, // the caller's default applies
		"2021-04-12&x=1":     false,
		"2021-04-12 ":        false,
		"2021-04-1\n":        false,
		"2021-04-12-Preview": false,
	} {
		err := CheckAPIVersion("DPS", v)
		if ok != (err == nil) || err != nil && (!fault.Is(err, fault.InvalidArgs) || !strings.HasPrefix(err.Error(), "DPS api-version ")) {
			t.Errorf("CheckAPIVersion(%q) = %v, want ok %v", v, err, ok)
		}
	}
}

func TestDefaultFillsZeroKeepsPositiveRefusesNegative(t *testing.T) {
	for _, tc := range []struct {
		in, want time.Duration
		err      string
	}{
		{in: 0, want: 30 * time.Second},
		{in: time.Second, want: time.Second},
		{in: -time.Second, want: -time.Second, err: "DPS timeout -1s is negative"},
	} {
		v := tc.in
		err := Default("DPS", "timeout", &v, 30*time.Second)
		if v != tc.want {
			t.Errorf("Default(%v) left %v, want %v", tc.in, v, tc.want)
		}
		var fe *fault.Error
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("Default(%v): %v", tc.in, err)
		case tc.err != "" && (!errors.As(err, &fe) || fe.Kind != fault.InvalidArgs || fe.Msg != tc.err):
			t.Errorf("Default(%v) = %v, want InvalidArgs %q", tc.in, err, tc.err)
		}
	}
	n := -2
	if err := Default("EST", "MaxAttempts", &n, 10); err == nil || err.Error() != "EST MaxAttempts -2 is negative" {
		t.Errorf("a negative count: %v", err)
	}
}

func TestCheckText(t *testing.T) {
	tests := []struct {
		name, v string
		want    string
	}{
		{"plain", "op-1.a_b", ""},
		{"at the limit", strings.Repeat("a", 8), ""},
		{"too long", strings.Repeat("a", 9), "is longer than 8 bytes"},
		{"newline", "a\nb", "contains control characters"},
		{"DEL", "a\x7f", "contains control characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckText("etag", tt.v, 8)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && (!fault.Is(err, fault.InvalidArgs) || !strings.Contains(err.Error(), "etag "+tt.want)):
				t.Fatalf("err %v, want InvalidArgs with %q", err, tt.want)
			}
		})
	}
}
