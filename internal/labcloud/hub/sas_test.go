package hub

import (
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The known answer of azure-cli's TestSasTokenAuth (iot extension): the
// same key, resource and expiry must give this signature.
const (
	kaKey       = "+XLy+MVZ+aTeOnVzN2kLeB16O+kSxmz6g3rS6fAf6rw="
	kaResource  = "iot-hub-for-test.azure-devices.net/devices/iot-device-for-test"
	kaExpiry    = 1471940363
	kaSignature = "SIumZ1ACqqPJZ2okHDlW9MSYKykEpqsQY3z6FMOICd4%3D"
)

func TestSignSASMatchesAzureCLIKnownAnswer(t *testing.T) {
	key, _ := base64.StdEncoding.DecodeString(kaKey)
	tok := SignSAS(key, kaResource, time.Unix(kaExpiry, 0), "")
	for _, want := range []string{"sig=" + kaSignature, "se=1471940363", "sr=iot-hub-for-test.azure-devices.net%2Fdevices%2Fiot-device-for-test"} {
		if !strings.Contains(tok, want) {
			t.Errorf("token %q lacks %q", tok, want)
		}
	}
	if strings.Contains(tok, "skn=") {
		t.Errorf("device token %q has skn", tok)
	}
}

func TestVerifyAcceptsKnownAnswerUntilExpiry(t *testing.T) {
	key, _ := base64.StdEncoding.DecodeString(kaKey)
	tok, err := ParseSAS("SharedAccessSignature sr=iot-hub-for-test.azure-devices.net%2Fdevices%2Fiot-device-for-test&sig=" + kaSignature + "&se=1471940363")
	if err != nil {
		t.Fatal(err)
	}
	if err := tok.Verify(time.Unix(kaExpiry-1, 0), key); err != nil {
		t.Errorf("known answer refused: %v", err)
	}
	if err := tok.Verify(time.Unix(kaExpiry, 0), key); !errors.Is(err, ErrExpiredSAS) {
		t.Errorf("at se: %v, want ErrExpiredSAS", err)
	}
	other := make([]byte, 32)
	if err := tok.Verify(time.Unix(kaExpiry-1, 0), other); !errors.Is(err, ErrBadSignature) {
		t.Errorf("wrong key: %v, want ErrBadSignature", err)
	}
}

func TestVerifyAcceptsEverySRFormSDKsSign(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	exp := time.Now().Add(time.Hour)
	res := "0ne00000001/registrations/dev-1"
	for name, sr := range map[string]string{
		"upper-case encoded (Python, .NET)": "0ne00000001%2Fregistrations%2Fdev-1",
		"lower-case encoded (C)":            "0ne00000001%2fregistrations%2fdev-1",
		"raw":                               res,
	} {
		t.Run(name, func(t *testing.T) {
			tok, err := ParseSAS(signAs(key, sr, exp, "registration"))
			if err != nil {
				t.Fatal(err)
			}
			if tok.Resource != res {
				t.Errorf("Resource = %q, want %q", tok.Resource, res)
			}
			if err := tok.Verify(time.Now(), key); err != nil {
				t.Errorf("refused: %v", err)
			}
		})
	}
}

// signAs signs sr exactly as given, the way a client that puts sr in the
// token unchanged does.
func signAs(key []byte, sr string, exp time.Time, skn string) string {
	se := strconv.FormatInt(exp.Unix(), 10)
	sig := hmacB64(key, sr+"\n"+se)
	out := SASPrefix + "sr=" + sr + "&sig=" + strings.NewReplacer("+", "%2B", "/", "%2F", "=", "%3D").Replace(sig) + "&se=" + se
	if skn != "" {
		out += "&skn=" + skn
	}
	return out
}

func TestParseSASRefusesMalformedTokens(t *testing.T) {
	good := "sr=h%2Fdevices%2Fd&sig=SIumZ1ACqqPJZ2okHDlW9MSYKykEpqsQY3z6FMOICd4%3D&se=1471940363"
	for name, h := range map[string]string{
		"no prefix":       good,
		"basic auth":      "Basic YTpi",
		"missing sr":      SASPrefix + "sig=SIumZ1ACqqPJZ2okHDlW9MSYKykEpqsQY3z6FMOICd4%3D&se=1",
		"missing sig":     SASPrefix + "sr=h&se=1",
		"missing se":      SASPrefix + "sr=h&sig=SIumZ1ACqqPJZ2okHDlW9MSYKykEpqsQY3z6FMOICd4%3D",
		"se not a number": SASPrefix + "sr=h&sig=SIumZ1ACqqPJZ2okHDlW9MSYKykEpqsQY3z6FMOICd4%3D&se=soon",
		"short sig":       SASPrefix + "sr=h&sig=AAAA&se=1",
		"twice sr":        SASPrefix + good + "&sr=x",
		"bad escape":      SASPrefix + "sr=h%zz&sig=SIumZ1ACqqPJZ2okHDlW9MSYKykEpqsQY3z6FMOICd4%3D&se=1",
		"field no equals": SASPrefix + good + "&junk",
	} {
		if _, err := ParseSAS(h); !errors.Is(err, ErrMalformedSAS) {
			t.Errorf("%s: %q: err %v, want ErrMalformedSAS", name, h, err)
		}
	}
	if _, err := ParseSAS(SASPrefix + good + "&skn=iothubowner&extra=1"); err != nil {
		t.Errorf("good token with skn and an extra field refused: %v", err)
	}
}

func TestDeriveKeyIsHMACOfRegistrationID(t *testing.T) {
	group := []byte("0123456789abcdef0123456789abcdef")
	got := base64.StdEncoding.EncodeToString(DeriveKey(group, "dev-1"))
	if want := hmacB64(group, "dev-1"); got != want {
		t.Errorf("DeriveKey = %s, want %s", got, want)
	}
}

func FuzzParseSAS(f *testing.F) {
	f.Add("SharedAccessSignature sr=iot-hub-for-test.azure-devices.net%2Fdevices%2Fiot-device-for-test&sig=" + kaSignature + "&se=1471940363")
	f.Add("SharedAccessSignature sr=0ne00000001%2fregistrations%2fd&sig=" + kaSignature + "&se=99&skn=registration")
	f.Add("SharedAccessSignature sr=&sig=&se=")
	key, _ := base64.StdEncoding.DecodeString(kaKey)
	f.Fuzz(func(t *testing.T, h string) {
		tok, err := ParseSAS(h)
		if err != nil {
			return
		}
		if len(tok.Signature) != 32 || tok.RawResource == "" {
			t.Fatalf("accepted %q with %d-byte signature", h, len(tok.Signature))
		}
		_ = tok.Verify(time.Unix(0, 0), key)
	})
}
