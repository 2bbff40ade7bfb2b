package est

import (
	"encoding/base64"
	"testing"
)

func FuzzParseCertsOnly(f *testing.F) {
	ca := newCA(f, "fuzz CA")
	good := certsOnly(f, ca.Cert)
	der, _ := base64.StdEncoding.DecodeString(string(good[:len(good)-2]))
	for _, seed := range [][]byte{good, der, der[:len(der)/2], []byte("MIIB"), []byte("<html>"), {0x30, 0x80, 0x30, 0x80, 0, 0, 0, 0}, {}} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		certs, err := ParseCertsOnly(body)
		if err == nil && len(certs) == 0 {
			t.Fatal("no error and no certificate")
		}
	})
}

func FuzzParseCSRAttrs(f *testing.F) {
	f.Add([]byte(rfc7030Example))
	der, _ := base64.StdEncoding.DecodeString(rfc7030Example)
	f.Add(der)
	f.Add([]byte("MAA="))
	f.Fuzz(func(t *testing.T, body []byte) {
		a, err := ParseCSRAttrs(body)
		if err != nil {
			return
		}
		a.Has(OIDChallengePassword)
		a.ChallengePasswordRequested()
		h, _ := a.KeyHint()
		_ = h.Type()
		a.SignatureAlgorithm()
		a.ExtensionRequests()
	})
}
