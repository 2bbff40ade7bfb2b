package pemfile

import (
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgev2/edgev2/internal/testpki"
)

func certPEM(t *testing.T, cn string) []byte {
	return testpki.NewCA(t, cn).PEM()
}

func TestReadCertificatesKeepsCertificatesInOrderAndRefusesTheRest(t *testing.T) {
	a, b := certPEM(t, "a"), certPEM(t, "b")
	key := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte{1}})
	broken := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")})
	cases := []struct {
		name    string
		file    []byte
		want    []string // common names
		wantErr string
	}{
		{"two certificates and a key", append(append(append([]byte("text before\n"), a...), key...), b...), []string{"a", "b"}, ""},
		{"no certificate", key, nil, "holds no PEM certificate"},
		{"empty", nil, nil, "holds no PEM certificate"},
		{"a certificate that does not parse", append(a, broken...), nil, "x509"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "certs.pem")
			if err := os.WriteFile(path, c.file, 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := ReadCertificates(path)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) || !strings.Contains(err.Error(), path) {
					t.Fatalf("err %v, want one naming %s with %q", err, path, c.wantErr)
				}
				return
			}
			if err != nil || len(got) != len(c.want) {
				t.Fatalf("got %d certificates, %v; want %v", len(got), err, c.want)
			}
			for i, cert := range got {
				if cert.Subject.CommonName != c.want[i] {
					t.Errorf("certificate %d is %s, want %s", i, cert.Subject.CommonName, c.want[i])
				}
			}
		})
	}
	if _, err := ReadCertificates(filepath.Join(t.TempDir(), "absent.pem")); !os.IsNotExist(err) {
		t.Fatalf("a missing file: %v", err)
	}
}
