package est

import (
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/edgev2/edgev2/fault"
)

// rfc7030Example is the csrattrs response of RFC 7030 section 4.5.2.
const rfc7030Example = "MEEGCSqGSIb3DQEJBzASBgcqhkjOPQIBMQcGBSuBBAAiMBYGCSqGSIb3DQEJDjEJBgcrBgEBAQEWBggqhkjOPQQDAw=="

var oidMACAddress = asn1.ObjectIdentifier{1, 3, 6, 1, 1, 1, 1, 22}

func TestParseCSRAttrsRFC7030Example(t *testing.T) {
	// With CRLF line breaks, as a pre-RFC 8951 server might send it.
	body := rfc7030Example[:40] + "\r\n" + rfc7030Example[40:] + "\r\n"
	a, err := ParseCSRAttrs([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(a.OIDs) != 2 || !a.OIDs[0].Equal(OIDChallengePassword) || !a.OIDs[1].Equal(asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}) {
		t.Errorf("OIDs = %v, want challengePassword and ecdsa-with-SHA384", a.OIDs)
	}
	if len(a.Attributes) != 2 || !a.Attributes[0].Type.Equal(OIDECPublicKey) || !a.Attributes[1].Type.Equal(OIDExtensionRequest) {
		t.Errorf("Attributes = %v, want id-ecPublicKey and extensionRequest", a.Attributes)
	}
	if !a.ChallengePasswordRequested() {
		t.Error("ChallengePasswordRequested = false")
	}
	if !a.Has(OIDExtensionRequest) || a.Has(OIDRSAEncryption) {
		t.Error("Has gives wrong answers")
	}
	hint, ok := a.KeyHint()
	if !ok || hint.Type() != "ec-p384" || !hint.Curve.Equal(OIDCurveP384) {
		t.Errorf("KeyHint = %+v %v (%q), want ec-p384", hint, ok, hint.Type())
	}
	if got := a.SignatureAlgorithm(); got != x509.ECDSAWithSHA384 {
		t.Errorf("SignatureAlgorithm = %v", got)
	}
	if ext := a.ExtensionRequests(); len(ext) != 1 || !ext[0].Equal(oidMACAddress) {
		t.Errorf("ExtensionRequests = %v, want macAddress", ext)
	}
}

func TestCSRAttrsHints(t *testing.T) {
	mustMarshal := func(v any) []byte {
		b, err := asn1.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	type attr struct {
		Type   asn1.ObjectIdentifier
		Values []asn1.RawValue `asn1:"set"`
	}
	raw := func(v any) asn1.RawValue { return asn1.RawValue{FullBytes: mustMarshal(v)} }
	type ext struct {
		ID    asn1.ObjectIdentifier
		Value []byte
	}
	for _, tc := range []struct {
		name    string
		elems   []asn1.RawValue
		keyType string
		exts    int
	}{
		{"empty", nil, "", 0},
		{"rsa with size (RFC 9908)", []asn1.RawValue{raw(attr{OIDRSAEncryption, []asn1.RawValue{raw(3072)}})}, "rsa-3072", 0},
		{"bare rsa, no size", []asn1.RawValue{raw(OIDRSAEncryption)}, "", 0},
		{"bare curve", []asn1.RawValue{raw(OIDCurveP256)}, "ec-p256", 0},
		{"bare ed25519", []asn1.RawValue{raw(OIDEd25519)}, "ed25519", 0},
		{"ec with unknown curve", []asn1.RawValue{raw(attr{OIDECPublicKey, []asn1.RawValue{raw(asn1.ObjectIdentifier{1, 2, 3})}})}, "", 0},
		{"extension template (RFC 9908)", []asn1.RawValue{raw(attr{OIDExtensionRequest, []asn1.RawValue{raw([]ext{{asn1.ObjectIdentifier{2, 5, 29, 17}, []byte{0x30, 0}}, {asn1.ObjectIdentifier{2, 5, 29, 15}, []byte{3, 1, 0}}})}})}, "", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			der := mustMarshal(tc.elems)
			if tc.elems == nil {
				der = []byte{0x30, 0}
			}
			a, err := ParseCSRAttrs([]byte(base64.StdEncoding.EncodeToString(der)))
			if err != nil {
				t.Fatal(err)
			}
			h, _ := a.KeyHint()
			if h.Type() != tc.keyType {
				t.Errorf("KeyHint().Type() = %q, want %q", h.Type(), tc.keyType)
			}
			if n := len(a.ExtensionRequests()); n != tc.exts {
				t.Errorf("%d extension requests, want %d", n, tc.exts)
			}
		})
	}
	var nilAttrs *CSRAttrs
	if nilAttrs.Has(OIDChallengePassword) || nilAttrs.ChallengePasswordRequested() || nilAttrs.ExtensionRequests() != nil {
		t.Error("a nil *CSRAttrs should answer no to everything")
	}
}

func TestParseCSRAttrsRejectsMalformed(t *testing.T) {
	for name, body := range map[string][]byte{
		"empty":             nil,
		"not a sequence":    mustB64(t, []byte{0x02, 0x01, 0x05}),
		"trailing data":     mustB64(t, []byte{0x30, 0x00, 0x00}),
		"integer element":   mustB64(t, []byte{0x30, 0x03, 0x02, 0x01, 0x05}),
		"attribute no vals": mustB64(t, []byte{0x30, 0x09, 0x30, 0x07, 0x06, 0x03, 0x2a, 0x03, 0x04, 0x31, 0x00}),
		"truncated":         []byte(rfc7030Example[:30]),
		"html":              []byte("<html></html>"),
	} {
		t.Run(name, func(t *testing.T) {
			a, err := ParseCSRAttrs(body)
			if !fault.Is(err, fault.InvalidArgs) {
				t.Fatalf("ParseCSRAttrs = %+v, %v; want InvalidArgs", a, err)
			}
			t.Log(err)
		})
	}
}

func TestCSRAttrsFromServer(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		ctype  string
		body   string
		want   string // "" = nil result; "ok" = parsed; else error kind name
		detail string
	}{
		{"rfc example", 200, "application/csrattrs", rfc7030Example, "ok", ""},
		{"no content", 204, "", "", "", ""},
		{"not found means none", 404, "text/plain", "no attributes", "", ""},
		{"empty 200", 200, "application/csrattrs", "", "", ""},
		{"wrong type", 200, "text/html", "<html></html>", "Failed", "Content-Type"},
		{"garbage", 200, "application/csrattrs", "!!!!", "Failed", "invalid response"},
		{"forbidden", 403, "text/plain", "no", "NotAuthorized", `server says "no"`},
		{"server error", 500, "", "", "Unavailable", "HTTP 500"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := newCA(t, "EST CA")
			srv := newESTServer(t, ca, nil, func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodGet || r.URL.Path != "/.well-known/est/csrattrs" || r.Header.Get("Accept") != "application/csrattrs" {
					t.Errorf("request %s %s Accept=%q", r.Method, r.URL.Path, r.Header.Get("Accept"))
				}
				if tc.ctype != "" {
					w.Header().Set("Content-Type", tc.ctype)
				}
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			})
			a, err := srv.client(t, Config{}).CSRAttrs(context.Background(), Auth{})
			switch tc.want {
			case "":
				if a != nil || err != nil {
					t.Errorf("CSRAttrs = %+v, %v; want nil, nil", a, err)
				}
			case "ok":
				if err != nil || !a.ChallengePasswordRequested() {
					t.Errorf("CSRAttrs = %+v, %v", a, err)
				}
			default:
				if fault.KindOf(err).String() != tc.want || !strings.Contains(err.Error(), tc.detail) {
					t.Errorf("CSRAttrs = %v (kind %v), want %s with %q", err, fault.KindOf(err), tc.want, tc.detail)
				}
			}
		})
	}
}
