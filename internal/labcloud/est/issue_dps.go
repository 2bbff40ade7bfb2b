package est

import (
	"crypto/x509"
	"fmt"
	"strings"
	"time"
)

// IssueForCSR signs a client certificate for a CSR another labcloud
// service has already checked (DPS certificate issuance), with the
// subject copied byte for byte, recorded in the index (so it can be
// revoked) and never valid beyond the CA. It returns the chain, leaf
// first, up to and including the root.
func (s *Server) IssueForCSR(csr *x509.CertificateRequest, validity time.Duration) ([]*x509.Certificate, error) {
	if validity <= 0 {
		return nil, fmt.Errorf("validity %v is not positive", validity)
	}
	p := issueParams{publicKey: csr.PublicKey, rawSubject: csr.RawSubject, validity: validity, record: true}
	if s.cfg.BaseURL != "" {
		p.crlURL = strings.TrimSuffix(s.cfg.BaseURL, "/") + "/crl"
	}
	leaf, err := s.ca.issue(p, s.now())
	if err != nil {
		return nil, err
	}
	return append([]*x509.Certificate{leaf}, s.ca.chain()...), nil
}
