package testpki

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestIssuedCertificatesVerifyUpToTheirCA(t *testing.T) {
	root := NewCA(t, "root")
	sub := root.SubCA(t, "issuing")
	client := sub.Issue(t, "device-1", NewKey(t).Public(), nil)
	inter := x509.NewCertPool()
	inter.AddCert(sub.Cert)
	if _, err := client.Verify(x509.VerifyOptions{Roots: root.Pool(), Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("leaf under a sub-CA does not verify to the root: %v", err)
	}
	if client.Subject.CommonName != "device-1" || client.SerialNumber.Cmp(sub.Cert.SerialNumber) == 0 {
		t.Fatalf("leaf: subject %q serial %v (sub-CA serial %v)", client.Subject.CommonName, client.SerialNumber, sub.Cert.SerialNumber)
	}
	if _, err := client.Verify(x509.VerifyOptions{Roots: NewCA(t, "root").Pool(), Intermediates: inter}); err == nil {
		t.Fatal("a leaf verified under another CA of the same name")
	}
}

func TestOptionsAndTemplatesSayWhatIsOdd(t *testing.T) {
	expired := NewCA(t, "old", func(c *x509.Certificate) { c.NotAfter = time.Now().Add(-time.Hour) })
	if !expired.Cert.NotAfter.Before(time.Now()) {
		t.Fatalf("NotAfter %v: the option was not applied", expired.Cert.NotAfter)
	}
	ca := NewCA(t, "ca")
	tmpl := &x509.Certificate{KeyUsage: x509.KeyUsageKeyAgreement}
	cert := ca.Issue(t, "ek", NewKey(t).Public(), tmpl)
	if cert.KeyUsage != x509.KeyUsageKeyAgreement || len(cert.ExtKeyUsage) != 0 {
		t.Fatalf("key usage %v, EKU %v: want the template's and nothing added", cert.KeyUsage, cert.ExtKeyUsage)
	}
	if tmpl.SerialNumber != nil || !tmpl.NotAfter.IsZero() {
		t.Fatal("Issue changed the caller's template")
	}
}

func TestPEMFilesHoldTheCertificatesInOrder(t *testing.T) {
	ca := NewCA(t, "ca")
	leaf := ca.Issue(t, "leaf", NewKey(t).Public(), nil)
	path := WritePEM(t, filepath.Join(t.TempDir(), "chain.pem"), leaf, ca.Cert)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got [][]byte
	for blk, rest := pem.Decode(data); blk != nil; blk, rest = pem.Decode(rest) {
		got = append(got, blk.Bytes)
	}
	if len(got) != 2 || !bytes.Equal(got[0], leaf.Raw) || !bytes.Equal(got[1], ca.Cert.Raw) {
		t.Fatalf("%d blocks in the file, want leaf then CA", len(got))
	}
}

func TestCSRIsSignedForItsNames(t *testing.T) {
	csr, err := x509.ParseCertificateRequest(CSR(t, NewKey(t), "dev", "dev.local"))
	if err != nil || csr.CheckSignature() != nil || csr.Subject.CommonName != "dev" || len(csr.DNSNames) != 1 {
		t.Fatalf("CSR: %+v, %v", csr, err)
	}
}
