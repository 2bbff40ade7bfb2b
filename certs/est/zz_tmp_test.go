package est

import (
	"encoding/base64"
	"testing"

	"github.com/smallstep/pkcs7"
)

func FuzzTmpRawPKCS7(f *testing.F) {
	ca := newCA(f, "fuzz CA")
	good := certsOnly(f, ca.cert)
	der, _ := base64.StdEncoding.DecodeString(string(good[:len(good)-2]))
	f.Add(der)
	f.Add([]byte{0x30, 0x80, 0x30, 0x80, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) { pkcs7.Parse(b) })
}
