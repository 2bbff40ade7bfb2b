package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/edgev2/edgev2/certs/est"
	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/internal/testpki"
)

// The revoke verb, against the real binary: only with the state's token,
// and the serial is on the CRL at once.
func TestRevokeVerbRevokesThroughTheRunningServer(t *testing.T) {
	lab := testenv.StartLabcloud(t, "[est]\n[[est.users]]\nname = \"alice\"\npassword = \"s3cret\"\n")
	caPEM, err := os.ReadFile(lab.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client, err := est.New(est.Config{URL: lab.URL + "/.well-known/est", TrustAnchors: pool})
	if err != nil {
		t.Fatal(err)
	}
	csr := testpki.CSR(t, testpki.NewKey(t), "dev")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	issued, err := client.SimpleEnroll(ctx, est.Auth{Username: "alice", Password: "s3cret"}, csr)
	if err != nil {
		t.Fatal(err)
	}
	serial := issued[0].SerialNumber.Text(16)
	bin := testenv.BuildBinary(t, "./cmd/edgev2-labcloud")
	if out, err := exec.Command(bin, "revoke", "--state", t.TempDir(), serial).CombinedOutput(); err == nil {
		t.Fatalf("revoke with a state directory of no running server succeeded: %s", out)
	}
	if out, err := exec.Command(bin, "revoke", "--state", lab.State, "ffff").CombinedOutput(); err == nil || !strings.Contains(string(out), "404") {
		t.Fatalf("revoke of an unknown serial: %v %s", err, out)
	}
	out, err := exec.Command(bin, "revoke", "--state", lab.State, serial).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "revoked "+serial) {
		t.Fatalf("revoke: %v %s", err, out)
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := hc.Get(lab.URL + "/crl")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	der, _ := io.ReadAll(resp.Body)
	crl, err := x509.ParseRevocationList(der)
	if err != nil || len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].SerialNumber.Cmp(issued[0].SerialNumber) != 0 {
		t.Fatalf("CRL after revoke: %v", err)
	}
}
