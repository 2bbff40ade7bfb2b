package sas

import (
	"context"
	"testing"
	"time"
)

func FuzzParseToken(f *testing.F) {
	good, _ := Token(context.Background(), func(context.Context, []byte) ([]byte, error) { return []byte("0123456789abcdef0123456789abcdef"), nil },
		DPSResource("0ne00000001", "dev"), time.Unix(1700000000, 0), DPSKeyName)
	for _, s := range []string{good, "SharedAccessSignature sr=uri&sig=kcWxXAK2OAaAoq2oCkaGzX2NMqDB8nCyNuq2fPYCDhk%3D&se=12345",
		"SharedAccessSignature ", "SharedAccessSignature sr=%&sig=&se=", "SharedAccessSignature &&&", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseToken(s)
		if err != nil {
			return
		}
		if p.Resource == "" || len(p.Signature) == 0 || p.Signed == "" {
			t.Fatalf("accepted %q with empty fields: %+v", s, p)
		}
	})
}
