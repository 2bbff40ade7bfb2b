package workload

import (
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/http"
	"strings"
	"time"
)

// serverCert is POST /modules/{name}/genid/{genid}/certificate/server: a
// server certificate under the edge CA, at most 90 days.
func (h *routes) serverCert(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		CommonName string `json:"commonName"`
		Expiration string `json:"expiration"`
	}
	if err := readJSON(r, 64<<10, &req); err != nil {
		return err
	}
	if !validHostname(req.CommonName) {
		return refuse(http.StatusBadRequest, "commonName %q is not a host name", req.CommonName)
	}
	notAfter, err := time.Parse(time.RFC3339, req.Expiration)
	if err != nil || !notAfter.After(time.Now()) {
		return refuse(http.StatusBadRequest, "expiration %q is not an RFC 3339 time in the future", req.Expiration)
	}
	if maxLife := time.Now().Add(90 * 24 * time.Hour); notAfter.After(maxLife) {
		notAfter = maxLife
	}
	chain, key, err := h.m.be.ServerCert(r.Context(), h.module, req.CommonName, notAfter)
	if err != nil {
		return failed("server certificate", err)
	}
	writeCert(w, chain, key)
	return nil
}

// identityCert is POST /modules/{name}/certificate/identity: the module's
// client certificate under the edge CA.
func (h *routes) identityCert(w http.ResponseWriter, r *http.Request) error {
	chain, key, err := h.m.be.IdentityCert(r.Context(), h.module)
	if err != nil {
		return failed("identity certificate", err)
	}
	writeCert(w, chain, key)
	return nil
}

// writeCert answers 201 with aziot-edged's certificate response; the
// expiration is the leaf's.
func writeCert(w http.ResponseWriter, chain, key string) {
	expiration := ""
	if b, _ := pem.Decode([]byte(chain)); b != nil {
		if c, err := x509.ParseCertificate(b.Bytes); err == nil {
			expiration = c.NotAfter.UTC().Format(time.RFC3339)
		}
	}
	writeJSON(w, http.StatusCreated, map[string]any{
		"certificate": chain,
		"privateKey":  map[string]string{"type": "key", "bytes": key},
		"expiration":  expiration,
	})
}

// validHostname accepts what aziot-edged puts in a server certificate's
// subject alternative name: an IP address, or a DNS name of labels of
// letters, digits, hyphens and underscores (module names may have '_', and
// Docker's resolver, Go and OpenSSL all take it in a host name).
func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	if net.ParseIP(h) != nil {
		return true
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
