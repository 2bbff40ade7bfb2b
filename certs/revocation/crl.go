// Package revocation fetches and verifies CRLs: whether a certificate is on
// its issuer's revocation list, for certd's schedule and edgectl check.
package revocation

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/edgev2/edgev2/fault"
)

// MaxCRLSize caps a fetched CRL; a lab or device CA's CRL is a few KiB.
const MaxCRLSize = 1 << 20

// crlTimeout bounds one CRL fetch.
const crlTimeout = 30 * time.Second

// FetchCRL downloads the CRL at a certificate's CRL distribution point
// (http or https; https is verified against anchors, or the system roots
// when nil). The body is outside input: size-capped, parsed, not trusted
// until CheckRevoked verifies it.
func FetchCRL(ctx context.Context, rawURL string, anchors *x509.CertPool) (*x509.RevocationList, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return nil, fault.New(fault.InvalidArgs, "CRL distribution point %q is not an http(s) URL", rawURL)
	}
	ctx, cancel := context.WithTimeout(ctx, crlTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fault.Wrap(fault.Failed, err, "CRL request for %s", u.Redacted())
	}
	tr := &http.Transport{Proxy: http.ProxyFromEnvironment, TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: anchors}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fault.Wrap(fault.Unavailable, err, "fetch the CRL from %s: %v", u.Redacted(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fault.New(fault.Unavailable, "fetch the CRL from %s: HTTP %d", u.Redacted(), resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxCRLSize+1))
	if err != nil {
		return nil, fault.Wrap(fault.Unavailable, err, "read the CRL from %s: %v", u.Redacted(), err)
	}
	if len(body) > MaxCRLSize {
		return nil, fault.New(fault.Failed, "the CRL at %s is larger than %d bytes", u.Redacted(), MaxCRLSize)
	}
	return ParseCRL(body)
}

// ParseCRL parses a DER (or PEM) CRL.
func ParseCRL(body []byte) (*x509.RevocationList, error) {
	der := body
	if trimmed := bytes.TrimSpace(body); bytes.HasPrefix(trimmed, []byte("-----BEGIN X509 CRL-----")) {
		block, _ := pem.Decode(trimmed)
		if block == nil || block.Type != "X509 CRL" {
			return nil, fault.New(fault.Failed, "the CRL is PEM that does not decode")
		}
		der = block.Bytes
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fault.Wrap(fault.Failed, err, "the CRL does not parse: %v", err)
	}
	return crl, nil
}

// CheckRevoked verifies crl as issued by leaf's issuer — one of issuers
// whose subject is leaf's issuer name and whose key signed the CRL, never a
// certificate the CRL names itself — and reports whether leaf is on it.
func CheckRevoked(crl *x509.RevocationList, leaf *x509.Certificate, issuers []*x509.Certificate, now time.Time) (bool, error) {
	if !bytes.Equal(crl.RawIssuer, leaf.RawIssuer) {
		return false, fault.New(fault.Failed, "the CRL is issued by %q, not by the certificate's issuer %q", crl.Issuer.String(), leaf.Issuer.String())
	}
	verified := false
	for _, is := range issuers {
		if bytes.Equal(is.RawSubject, leaf.RawIssuer) && leaf.CheckSignatureFrom(is) == nil && crl.CheckSignatureFrom(is) == nil {
			verified = true
			break
		}
	}
	if !verified {
		return false, fault.New(fault.Failed, "the CRL for %q is not signed by the certificate's issuer", leaf.Subject.String())
	}
	if !crl.NextUpdate.IsZero() && now.After(crl.NextUpdate) {
		return false, fault.New(fault.Failed, "the CRL for %q is stale (nextUpdate %s)", leaf.Subject.String(), crl.NextUpdate.UTC().Format(time.RFC3339))
	}
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber != nil && e.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
			return true, nil
		}
	}
	return false, nil
}
