package est

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/internal/testpki"
)

// TestParseCertsOnlyFromOpenSSL proves interop with a real producer:
// openssl crl2pkcs7 output, as base64 with openssl's 64-column lines.
func TestParseCertsOnlyFromOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		testenv.Missing(t, "openssl", "it produces the reference PKCS#7 certs-only messages")
	}
	root := newCA(t, "root")
	key := newKey(t)
	leaf := root.Issue(t, "device-1", key.Public(), nil)

	dir := t.TempDir()
	chainFile := testpki.WritePEM(t, filepath.Join(dir, "chain.pem"), leaf, root.Cert)
	der, err := exec.Command(openssl, "crl2pkcs7", "-nocrl", "-certfile", chainFile, "-outform", "DER").Output()
	if err != nil {
		t.Fatalf("openssl crl2pkcs7: %v", err)
	}
	b64 := exec.Command(openssl, "base64")
	b64.Stdin = bytes.NewReader(der)
	text, err := b64.Output()
	if err != nil {
		t.Fatalf("openssl base64: %v", err)
	}
	pemOut, err := exec.Command(openssl, "crl2pkcs7", "-nocrl", "-certfile", chainFile).Output()
	if err != nil {
		t.Fatalf("openssl crl2pkcs7 PEM: %v", err)
	}

	for name, body := range map[string][]byte{"base64": text, "DER": der, "PEM": pemOut} {
		t.Run(name, func(t *testing.T) {
			certs, err := ParseCertsOnly(body)
			if err != nil {
				t.Fatalf("ParseCertsOnly: %v", err)
			}
			if len(certs) != 2 || !certs[0].Equal(leaf) || !certs[1].Equal(root.Cert) {
				t.Errorf("got %d certs, want leaf and root in openssl's order", len(certs))
			}
		})
	}
}
