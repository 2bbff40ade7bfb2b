package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgev2/edgev2/internal/labcloud/est"
)

// revokeMain is `edgev2-labcloud revoke --state DIR SERIAL`: it asks the
// running labcloud (whose URL, CA and admin token are in DIR) to revoke an
// EST-issued certificate, so it appears on /crl at once.
func revokeMain(args []string) int {
	fs := flag.NewFlagSet("edgev2-labcloud revoke", flag.ContinueOnError)
	state := fs.String("state", "", "the running labcloud's state `directory`; required")
	if err := fs.Parse(args); err != nil {
		return exitConfig
	}
	if *state == "" || fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: edgev2-labcloud revoke --state DIR SERIAL (hex, as `openssl x509 -serial` prints it)")
		return exitConfig
	}
	read := func(name string) (string, error) {
		b, err := os.ReadFile(filepath.Join(*state, name))
		return strings.TrimSpace(string(b)), err
	}
	url, err := read("url")
	if err != nil {
		fmt.Fprintf(os.Stderr, "edgev2-labcloud revoke: %v (fix: start edgev2-labcloud with --state %s first)\n", err, *state)
		return exitFailure
	}
	token, err := read(filepath.Join("est", est.AdminTokenFile))
	if err != nil {
		fmt.Fprintf(os.Stderr, "edgev2-labcloud revoke: %v (fix: run as the user that owns the state)\n", err)
		return exitFailure
	}
	caPEM, err := os.ReadFile(filepath.Join(*state, "ca.pem"))
	pool := x509.NewCertPool()
	if err != nil || !pool.AppendCertsFromPEM(caPEM) {
		fmt.Fprintf(os.Stderr, "edgev2-labcloud revoke: no CA in %s\n", filepath.Join(*state, "ca.pem"))
		return exitFailure
	}
	req, err := http.NewRequest(http.MethodPost, url+est.AdminRevokePath, strings.NewReader(fs.Arg(0)))
	if err != nil {
		fmt.Fprintf(os.Stderr, "edgev2-labcloud revoke: %v\n", err)
		return exitFailure
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "text/plain")
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	resp, err := hc.Do(req)
	if err != nil {
		fmt.Fprintf(os.Stderr, "edgev2-labcloud revoke: %v (is edgev2-labcloud running?)\n", err)
		return exitFailure
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(os.Stderr, "edgev2-labcloud revoke: HTTP %d: %s", resp.StatusCode, body)
		return exitFailure
	}
	fmt.Print(string(body))
	return 0
}
