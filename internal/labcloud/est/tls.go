package est

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"net"
	"time"
)

// serverCertValidity is the lifetime of the HTTPS certificate made at each start.
const serverCertValidity = 365 * 24 * time.Hour

// TLSConfig issues a fresh HTTPS server certificate from the CA for hosts
// (IP addresses or DNS names) and returns a server tls.Config that asks for
// client certificates without requiring them (Basic auth remains possible),
// trusting the EST CA and the bootstrap CAs.
func (s *Server) TLSConfig(hosts ...string) (*tls.Config, error) {
	if len(hosts) == 0 {
		return nil, fmt.Errorf("TLS server certificate: no host names")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("TLS server key: %w", err)
	}
	subject, err := asn1.Marshal(pkix.Name{CommonName: "edgev2-labcloud", Organization: []string{s.cfg.CA.Organization}}.ToRDNSequence())
	if err != nil {
		return nil, err
	}
	p := issueParams{publicKey: &key.PublicKey, rawSubject: subject, validity: serverCertValidity}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			p.ipAddrs = append(p.ipAddrs, ip)
		} else {
			p.dnsNames = append(p.dnsNames, h)
		}
	}
	cert, err := s.ca.issue(p, s.now())
	if err != nil {
		return nil, fmt.Errorf("TLS server certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(s.ca.anchor()) // the root only: clients present their intermediates
	for _, c := range s.bootstrapCAs {
		pool.AddCert(c)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{{Certificate: s.serverChain(cert), PrivateKey: key, Leaf: cert}},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    pool,
	}, nil
}

// serverChain is the HTTPS certificate with the intermediate under the root.
func (s *Server) serverChain(leaf *x509.Certificate) [][]byte {
	out := [][]byte{leaf.Raw}
	if s.ca.root != nil {
		out = append(out, s.ca.cert.Raw)
	}
	return out
}
