package sas

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/cloudhttp/cloudhttptest"
)

// TestSignerMatchesPythonSDKVector pins the HMAC step to the Python device
// SDK's published vector (tests/unit/common/auth/test_signing_mechanism.py,
// Azure/azure-iot-sdk-python): sign("sign this message").
func TestSignerMatchesPythonSDKVector(t *testing.T) {
	sign := cloudhttptest.HMACSigner(t, "NMgJDvdKTxjLi+xBxxkDDEwDJxEvOE5u8BiT0mVgPeg=")
	mac, _ := sign(context.Background(), []byte("sign this message"))
	if got, want := base64.StdEncoding.EncodeToString(mac), "8NJRMT83CcplGrAGaUVIUM/md5914KpWVNngSVoF9/M="; got != want {
		t.Fatalf("signature %s, want %s", got, want)
	}
}

func TestTokenKnownAnswers(t *testing.T) {
	tests := []struct {
		name, source       string
		key, resource, skn string
		expiry             int64
		want               string
	}{{
		// Azure/azure-iot-sdk-node, common/core/test/_shared_access_signature_test.js
		// ("does not include the skn segment"): key = base64("password").
		name: "node SDK published vector", source: "azure-iot-sdk-node",
		key: "cGFzc3dvcmQ=", resource: "uri", expiry: 12345,
		want: "SharedAccessSignature sr=uri&sig=kcWxXAK2OAaAoq2oCkaGzX2NMqDB8nCyNuq2fPYCDhk%3D&se=12345",
	}, {
		// The same vector with a key name. Node puts skn before se; the
		// C and Python SDKs and aziot-identityd put it last, as here.
		name: "node SDK vector with skn in C/Python order", source: "azure-iot-sdk-node",
		key: "cGFzc3dvcmQ=", resource: "uri", expiry: 12345, skn: "encode('Me')",
		want: "SharedAccessSignature sr=uri&sig=kcWxXAK2OAaAoq2oCkaGzX2NMqDB8nCyNuq2fPYCDhk%3D&se=12345&skn=encode%28%27Me%27%29",
	}, {
		// Computed with the Python SDK's algorithm (sastoken.py:
		// quote(uri, safe=""), quote(sig, safe="")) on CPython.
		name: "DPS registration", source: "python",
		key: "NMgJDvdKTxjLi+xBxxkDDEwDJxEvOE5u8BiT0mVgPeg=", resource: DPSResource("0ne00000001", "my-device-01"),
		expiry: 1700000000, skn: DPSKeyName,
		want: "SharedAccessSignature sr=0ne00000001%2Fregistrations%2Fmy-device-01&sig=7O9KyZvNu%2BxBDVCb4PdK9DrgomrPch1ajaoz%2BIiKUSg%3D&se=1700000000&skn=registration",
	}, {
		name: "device id with space and colon", source: "python",
		key: "zqtyZCGuKg/UHvSzgYnNod/uHChWrzGGtHSgPi4cC2U=", resource: DeviceResource("myhub.azure-devices.net", "dev 1:a"),
		expiry: 1700000000,
		want:   "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev%201%3Aa&sig=F2HslH7G0XHgP4qyOWnrS7xz%2F8zrKWrpaM0VopugGX8%3D&se=1700000000",
	}, {
		name: "module", source: "python",
		key: "zqtyZCGuKg/UHvSzgYnNod/uHChWrzGGtHSgPi4cC2U=", resource: ModuleResource("myhub.azure-devices.net", "edge1", "$edgeHub"),
		expiry: 1700000000,
		want:   "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fedge1%2Fmodules%2F%24edgeHub&sig=l12U0scaekSTGalrveTATcM6Zf5Iku4AF0oaBXedvN0%3D&se=1700000000",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Token(context.Background(), cloudhttptest.HMACSigner(t, tt.key), tt.resource, time.Unix(tt.expiry, 0), tt.skn)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("token\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestTokenSignsEncodedResourceNewlineExpiry(t *testing.T) {
	var signed []byte
	sign := func(_ context.Context, data []byte) ([]byte, error) {
		signed = append([]byte(nil), data...)
		return []byte{0xfb, 0xff}, nil
	}
	tok, err := Token(context.Background(), sign, "a/b c", time.Unix(99, 0), "")
	if err != nil {
		t.Fatal(err)
	}
	if string(signed) != "a%2Fb%20c\n99" {
		t.Fatalf("signed %q", signed)
	}
	if tok != "SharedAccessSignature sr=a%2Fb%20c&sig=%2B%2F8%3D&se=99" {
		t.Fatalf("token %s", tok)
	}
}

func TestTokenRejectsBadInput(t *testing.T) {
	ok := func(context.Context, []byte) ([]byte, error) { return []byte{1}, nil }
	boom := func(context.Context, []byte) ([]byte, error) {
		return nil, fault.New(fault.NotAuthorized, "key %q may not be used", "device")
	}
	empty := func(context.Context, []byte) ([]byte, error) { return nil, nil }
	now := time.Unix(1700000000, 0)
	tests := []struct {
		name     string
		sign     Signer
		resource string
		expiry   time.Time
		kind     fault.Kind
	}{
		{"nil signer", nil, "r", now, fault.InvalidArgs},
		{"empty resource", ok, "", now, fault.InvalidArgs},
		{"zero expiry", ok, "r", time.Time{}, fault.InvalidArgs},
		{"signer error keeps its kind", boom, "r", now, fault.NotAuthorized},
		{"empty signature", empty, "r", now, fault.Failed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Token(context.Background(), tt.sign, tt.resource, tt.expiry, "")
			if err == nil || fault.KindOf(err) != tt.kind {
				t.Fatalf("err %v (kind %v), want kind %v", err, fault.KindOf(err), tt.kind)
			}
		})
	}
}

func TestTokenPassesContextToSigner(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	sign := func(ctx context.Context, _ []byte) ([]byte, error) { return nil, ctx.Err() }
	_, err := Token(ctx, sign, "r", time.Unix(1, 0), "")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled in chain", err)
	}
}

func TestParseTokenRoundTrip(t *testing.T) {
	sign := cloudhttptest.HMACSigner(t, "cGFzc3dvcmQ=")
	tok, err := Token(context.Background(), sign, DPSResource("0ne0000ABC", "dev-1"), time.Unix(1700000000, 0), DPSKeyName)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParseToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	if p.Resource != "0ne0000ABC/registrations/dev-1" || p.KeyName != "registration" || p.Expiry.Unix() != 1700000000 {
		t.Fatalf("parsed %+v", p)
	}
	want, _ := sign(context.Background(), []byte(p.Signed))
	if !bytes.Equal(p.Signature, want) {
		t.Fatal("signature does not verify over Signed")
	}
}

func TestParseTokenAcceptsAnyFieldOrder(t *testing.T) {
	// The Node SDK's order, and the order shown in the DPS docs.
	for _, s := range []string{
		"SharedAccessSignature sr=uri&sig=kcWxXAK2OAaAoq2oCkaGzX2NMqDB8nCyNuq2fPYCDhk%3D&skn=n&se=12345",
		"SharedAccessSignature sig=kcWxXAK2OAaAoq2oCkaGzX2NMqDB8nCyNuq2fPYCDhk%3D&se=12345&skn=n&sr=uri",
	} {
		p, err := ParseToken(s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if p.Resource != "uri" || p.KeyName != "n" || p.Signed != "uri\n12345" {
			t.Fatalf("%s: parsed %+v", s, p)
		}
	}
}

func TestParseTokenRejects(t *testing.T) {
	const sig = "kcWxXAK2OAaAoq2oCkaGzX2NMqDB8nCyNuq2fPYCDhk%3D"
	for name, s := range map[string]string{
		"no prefix":          "sr=uri&sig=" + sig + "&se=1",
		"wrong prefix":       "SharedERRORSignature sr=uri&sig=" + sig + "&se=1",
		"missing sr":         "SharedAccessSignature sig=" + sig + "&se=1",
		"missing sig":        "SharedAccessSignature sr=uri&se=1",
		"missing se":         "SharedAccessSignature sr=uri&sig=" + sig,
		"unknown field":      "SharedAccessSignature sr=uri&sig=" + sig + "&se=1&foovalue=nonsense",
		"repeated field":     "SharedAccessSignature sr=uri&sr=x&sig=" + sig + "&se=1",
		"field without =":    "SharedAccessSignature sr=uri&sig=" + sig + "&se",
		"se not a number":    "SharedAccessSignature sr=uri&sig=" + sig + "&se=-1",
		"se huge":            "SharedAccessSignature sr=uri&sig=" + sig + "&se=99999999999999999999999",
		"sig not base64":     "SharedAccessSignature sr=uri&sig=!!!&se=1",
		"bad escape in sr":   "SharedAccessSignature sr=%zz&sig=" + sig + "&se=1",
		"empty":              "",
		"too long":           "SharedAccessSignature sr=" + strings.Repeat("a", maxTokenLen) + "&sig=" + sig + "&se=1",
		"empty field name":   "SharedAccessSignature =x&sr=uri&sig=" + sig + "&se=1",
		"trailing ampersand": "SharedAccessSignature sr=uri&sig=" + sig + "&se=1&",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseToken(s)
			if !fault.Is(err, fault.InvalidArgs) {
				t.Fatalf("err %v, want InvalidArgs", err)
			}
			if strings.Contains(fault.Message(err), "kcWxXAK2") {
				t.Fatalf("error quotes the signature: %v", err)
			}
		})
	}
}

func TestEscapeMatchesPythonQuoteSafeEmpty(t *testing.T) {
	// urllib.parse.quote(s, safe="") on CPython 3.
	for in, want := range map[string]string{
		"abcXYZ019-._~":  "abcXYZ019-._~",
		"a/b":            "a%2Fb",
		"a b+c=d&e":      "a%20b%2Bc%3Dd%26e",
		"$edgeAgent":     "%24edgeAgent",
		"é":              "%C3%A9",
		"!*'();:@,?#[]%": "%21%2A%27%28%29%3B%3A%40%2C%3F%23%5B%5D%25",
	} {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
}
