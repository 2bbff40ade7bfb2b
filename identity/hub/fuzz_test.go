package hub

import "testing"

func FuzzParseModule(f *testing.F) {
	for _, s := range []string{moduleJSON("m1", "MA=="), `{"moduleId":"m"}`, `{"moduleId":"m","authentication":{"type":"none"}}`,
		`{"moduleId":"m","authentication":{"type":"sas","symmetricKey":{"primaryKey":"!!"}}}`, `[]`, `null`, `<html>`, moduleJSON("m", "x")[:40]} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := ParseModule(body)
		if err != nil {
			return
		}
		if m.ModuleID == "" {
			t.Fatalf("accepted a module without id: %s", body)
		}
		switch m.Authentication.Type {
		case "", AuthSAS, AuthSelfSigned, AuthCertificateAuthority, AuthNone:
		default:
			t.Fatalf("accepted auth type %q", m.Authentication.Type)
		}
		// Round trip through the request form must not panic.
		_ = toWire("d", m.ModuleID, m.ManagedBy, m.Authentication)
	})
}
