package testenv

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"testing"
)

func TestSwtpmAnswersTPM2ToolsWithItsMakersEKCertificate(t *testing.T) {
	RequireRoot(t)
	s := StartSwtpm(t)
	if _, err := exec.LookPath("tpm2_nvread"); err != nil {
		Missing(t, "tpm2-tools", "tpm2_nvread is not on PATH (Debian package tpm2-tools)")
	}
	cmd := exec.Command("tpm2_nvread", "-T", s.TCTI, "0x01c00002")
	der, err := cmd.Output()
	if err != nil {
		t.Fatalf("tpm2_nvread EK certificate: %v", err)
	}
	ek, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("EK certificate in NV does not parse: %v", err)
	}
	caPEM, err := os.ReadFile(s.MakerCAFile)
	if err != nil {
		t.Fatal(err)
	}
	// EK certificates carry TCG-specific critical extensions (SAN of the
	// TPM manufacturer), so only the signature chain is checked here.
	for _, c := range certsOf(t, caPEM) {
		if ek.CheckSignatureFrom(c) == nil {
			return
		}
	}
	t.Fatalf("EK certificate %q is not signed by the maker CA", ek.Subject)
}

func certsOf(t *testing.T, p []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, p = pem.Decode(p)
		if b == nil {
			return out
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}
