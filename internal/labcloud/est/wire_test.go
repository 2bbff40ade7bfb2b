package est

import (
	"bytes"
	cryptoRand "crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

type randReader struct{}

func (randReader) Read(p []byte) (int, error) { return cryptoRand.Read(p) }

func hexString(b []byte) string { return hex.EncodeToString(b) }

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

func TestDecodeBase64AcceptsRFC8951Whitespace(t *testing.T) {
	want := []byte("\x30\x82\x01\x02 some DER-ish bytes \xff\xfe")
	std := base64.StdEncoding.EncodeToString(want)
	for name, in := range map[string]string{
		"plain":      std,
		"LF lines":   std[:8] + "\n" + std[8:16] + "\n" + std[16:] + "\n",
		"CRLF lines": std[:8] + "\r\n" + std[8:] + "\r\n",
		"spaces":     " " + std[:4] + " \t" + std[4:] + " ",
		"no padding": strings.TrimRight(std, "="),
	} {
		got, err := decodeBase64([]byte(in))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %x, %v", name, got, err)
		}
	}
}

func TestDecodeBase64RefusesNonBase64WithAReason(t *testing.T) {
	for in, reason := range map[string]string{
		"":                                  "empty",
		"  \n ":                             "empty",
		"-----BEGIN CERTIFICATE REQUEST---": "PEM",
		"<!DOCTYPE html>":                   "HTML",
		"abc$def":                           "not valid base64",
		"QUJD=QUJD":                         "not valid base64",
	} {
		if _, err := decodeBase64([]byte(in)); err == nil || !strings.Contains(err.Error(), reason) {
			t.Errorf("%q: %v, want an error saying %q", in, err, reason)
		}
	}
}

func TestEncodeBase64WrapsAt64AndRoundTrips(t *testing.T) {
	der := bytes.Repeat([]byte{0xAB, 0xCD, 0xEF}, 100)
	enc := encodeBase64(der)
	for _, line := range strings.Split(strings.TrimSuffix(string(enc), "\n"), "\n") {
		if len(line) > 64 {
			t.Fatalf("line of %d characters", len(line))
		}
	}
	if got, err := decodeBase64(enc); err != nil || !bytes.Equal(got, der) {
		t.Fatal("round trip failed")
	}
}

func TestSplitESTPath(t *testing.T) {
	for _, tc := range []struct {
		path, label, op string
		ok              bool
	}{
		{"/.well-known/est/cacerts", "", "cacerts", true},
		{"/.well-known/est/arbitraryLabel1/simpleenroll", "arbitraryLabel1", "simpleenroll", true},
		{"/.well-known/est/", "", "", false},
		{"/.well-known/est//cacerts", "", "", false},
		{"/.well-known/est/a/b/cacerts", "", "", false},
		{"/.well-known/est/a/", "", "", false},
		{"/est/cacerts", "", "", false},
	} {
		label, op, ok := splitESTPath(tc.path)
		if label != tc.label || op != tc.op || ok != tc.ok {
			t.Errorf("%s = %q %q %v, want %q %q %v", tc.path, label, op, ok, tc.label, tc.op, tc.ok)
		}
	}
}

func TestConfigLoadsFromTOMLESTTable(t *testing.T) {
	var file struct {
		EST Config `toml:"est"`
	}
	src := `
[est]
validity = "90s"
csrattrs = ["ecdsa-with-SHA256"]
bootstrap_ca_files = ["/etc/idevid-ca.pem"]
defer_first = 1
retry_after = 3
reject_subjects = ["evil-*"]
labels = ["tenant-a"]
base_url = "https://127.0.0.1:8443"
[est.ca]
common_name = "Lab CA"
validity = "8760h"
[[est.users]]
name = "alice"
password = "s3cret"
`
	if err := toml.NewDecoder(strings.NewReader(src)).DisallowUnknownFields().Decode(&file); err != nil {
		t.Fatal(err)
	}
	c := file.EST
	if c.Validity != Duration(90e9) || c.CA.Validity != Duration(8760*3600e9) || c.CA.CommonName != "Lab CA" ||
		len(c.Users) != 1 || c.Users[0].Password != "s3cret" || c.DeferFirst != 1 || c.RetryAfter != 3 ||
		c.Labels[0] != "tenant-a" || c.RejectSubjects[0] != "evil-*" || c.BootstrapCAFiles[0] != "/etc/idevid-ca.pem" {
		t.Errorf("decoded %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
}

func TestConfigValidateNamesTheBadKey(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		key  string
	}{
		{"negative validity", Config{Validity: -1}, "validity"},
		{"bad csrattr", Config{CSRAttrs: []string{"not-an-oid"}}, "csrattrs"},
		{"bad csrattr value", Config{CSRAttrs: []string{"1.2.3=x"}}, "csrattrs"},
		{"user without password", Config{Users: []User{{Name: "a"}}}, "users[0].password"},
		{"user name with colon", Config{Users: []User{{Name: "a:b", Password: "p"}}}, "users[0].name"},
		{"duplicate user", Config{Users: []User{{"a", "p"}, {"a", "q"}}}, "users[1].name"},
		{"negative defer", Config{DeferFirst: -1}, "defer_first"},
		{"bad glob", Config{RejectSubjects: []string{"["}}, "reject_subjects[0]"},
		{"bad label", Config{Labels: []string{"a/b"}}, "labels[0]"},
		{"bad base URL", Config{BaseURL: "ftp://x"}, "base_url"},
	} {
		err := tc.cfg.Validate()
		ce, ok := err.(*ConfigError)
		if !ok || ce.Key != tc.key {
			t.Errorf("%s: %v, want a ConfigError for %s", tc.name, err, tc.key)
		}
	}
}

// FuzzParseCSR feeds arbitrary request bodies to the CSR parser: it must
// never panic, and whatever it accepts must carry a valid signature.
func FuzzParseCSR(f *testing.F) {
	f.Add(csrB64(f, newKey(f), "seed", "seed.local"))
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----"))
	f.Add([]byte("<html></html>"))
	f.Add([]byte("MIIBIjAN\r\n BgkqhkiG9w0B"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, body []byte) {
		csr, err := parseCSR(body)
		if err != nil {
			return
		}
		if csr.CheckSignature() != nil {
			t.Fatal("accepted a CSR whose signature does not verify")
		}
	})
}

// FuzzDecodeBase64 checks the decoder against the standard library on
// whitespace-free, padded input.
func FuzzDecodeBase64(f *testing.F) {
	f.Add([]byte("QUJD"), []byte("\n"))
	f.Fuzz(func(t *testing.T, data, ws []byte) {
		enc := base64.StdEncoding.EncodeToString(data)
		if len(enc) == 0 {
			return
		}
		var b bytes.Buffer
		for i := 0; i < len(enc); i++ {
			b.WriteByte(enc[i])
			if len(ws) > 0 && (ws[i%len(ws)] == ' ' || ws[i%len(ws)] == '\n') {
				b.WriteByte(ws[i%len(ws)])
			}
		}
		got, err := decodeBase64(b.Bytes())
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("decode(%q) = %x, %v; want %x", b.Bytes(), got, err, data)
		}
	})
}
