package certs

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"slices"
	"time"

	"github.com/edgev2/edgev2/certs/api"
	"github.com/edgev2/edgev2/certs/config"
	"github.com/edgev2/edgev2/fault"
)

// CreateOptions say how CreateCertificate issues.
type CreateOptions struct {
	Issuer     string // "self_signed", "local_ca" or "est"
	KeyID      string // self_signed: the key of the CSR
	IssuerCert string // local_ca: the CA certificate id
	// IssuerKey is accepted only when it names the key the configuration
	// binds to IssuerCert (older clients pass it); it never chooses the key.
	IssuerKey string
	Validity  time.Duration
	CA        bool
	// PathLen bounds a CA certificate's chain below it; -1 or unset means
	// 0 under a local CA (a CA that issues only leaves) and unlimited for a
	// self-signed root.
	PathLen    int
	HasPathLen bool
	// ESTURL and ESTLabel are accepted only when they name the EST server
	// and label the configuration gives the id (like IssuerKey): they say
	// which CA enrolls it, so they never choose it.
	ESTURL   string
	ESTLabel string
}

// Authority is what a CreateCertificate call asks of the configuration,
// for the adapter to authorize: the CA whose key signs, and whether the
// subject comes from the configuration.
type Authority struct {
	// IssuerCert is the certificate id of the issuing CA: the CA for
	// local_ca, the certificate itself for self_signed, "" for est (the
	// EST server is the CA).
	IssuerCert string
	// Configured: id has a [cert_issuance.<id>] entry, which fixes its
	// method, issuer, subject, subjectAltNames and CA flag.
	Configured bool
}

// Authority checks a CreateCertificate request against the configuration
// (no CSR needed) and says what authority it uses.
func (s *Service) Authority(id string, o CreateOptions) (Authority, error) {
	is, configured := s.cfg.Issuance[id]
	a := Authority{Configured: configured}
	switch o.Issuer {
	case "self_signed":
		a.IssuerCert = id
	case "local_ca":
		if o.IssuerCert == "" {
			return a, fault.New(fault.InvalidArgs, "issuer local_ca needs option issuer_cert: the CA's certificate id")
		}
		if err := api.ValidateID(o.IssuerCert); err != nil {
			return a, err
		}
		key, ok := s.cfg.CAKey(o.IssuerCert)
		if !ok {
			return a, fault.New(fault.InvalidArgs, "option issuer_cert: %q is not a local CA in certd's configuration ([local_ca.<id>], or a [cert_issuance.<id>] with ca = true)", o.IssuerCert)
		}
		if o.IssuerKey != "" && o.IssuerKey != key {
			return a, fault.New(fault.InvalidArgs, "option issuer_key: the configuration binds CA %q to its own key; a caller cannot choose it (leave issuer_key out)", o.IssuerCert)
		}
		a.IssuerCert = o.IssuerCert
	case "est":
		if !configured || is.Method != "est" {
			return a, fault.New(fault.InvalidArgs, "issuer est: certificate %q is not configured for EST issuance ([cert_issuance.%s] method = \"est\"); certd enrolls only configured ids under its EST identity", id, id)
		}
		if url := s.estURLOf(is); o.ESTURL != "" && o.ESTURL != url {
			return a, fault.New(fault.InvalidArgs, "option est_url: [cert_issuance.%s] enrolls %q at %q, not %q (leave est_url out)", id, id, url, o.ESTURL)
		}
		if label := s.estLabelOf(is); o.ESTLabel != "" && o.ESTLabel != label {
			return a, fault.New(fault.InvalidArgs, "option est_label: [cert_issuance.%s] enrolls %q under label %q, not %q (leave est_label out)", id, id, label, o.ESTLabel)
		}
	default:
		return a, fault.New(fault.InvalidArgs, "unknown issuer %q (want self_signed, local_ca or est)", o.Issuer)
	}
	if o.HasPathLen && !o.CA {
		return a, fault.New(fault.InvalidArgs, "option path_len only applies with option ca")
	}
	if configured {
		if is.Method != o.Issuer {
			return a, fault.New(fault.InvalidArgs, "option issuer: [cert_issuance.%s] issues %q with %q, not %q", id, id, is.Method, o.Issuer)
		}
		if is.Method == "local_ca" && is.IssuerCert != o.IssuerCert {
			return a, fault.New(fault.InvalidArgs, "option issuer_cert: [cert_issuance.%s] issues %q under CA %q, not %q", id, id, is.IssuerCert, o.IssuerCert)
		}
		if is.CA != o.CA {
			return a, fault.New(fault.InvalidArgs, "option ca: [cert_issuance.%s] says ca = %v", id, is.CA)
		}
		// The configured lifetime bounds a caller's, as it bounds renewals.
		if o.Validity > is.Validity() {
			return a, fault.New(fault.InvalidArgs, "option validity: %v is longer than the lifetime [cert_issuance.%s] gives %q (%v)", o.Validity, id, id, is.Validity())
		}
	}
	return a, nil
}

// checkSubject: a configured id's request asks for exactly the configured
// subject (common_name, organization) and only configured DNS names.
func checkSubject(id string, is *config.Issuance, csr *x509.CertificateRequest) error {
	want := 1
	if is.Organization != "" {
		want = 2
	}
	org := ""
	if len(csr.Subject.Organization) == 1 {
		org = csr.Subject.Organization[0]
	}
	if csr.Subject.CommonName != is.CommonName || org != is.Organization || len(csr.Subject.Names) != want {
		return fault.New(fault.InvalidArgs, "the request's subject %q is not the one [cert_issuance.%s] gives it (common_name %q, organization %q)", csr.Subject.String(), id, is.CommonName, is.Organization)
	}
	for _, n := range csr.DNSNames {
		if !slices.Contains(is.DNSNames, n) {
			return fault.New(fault.InvalidArgs, "the request's DNS name %q is not in [cert_issuance.%s] dns_names", n, id)
		}
	}
	if len(csr.IPAddresses)+len(csr.EmailAddresses)+len(csr.URIs) > 0 {
		return fault.New(fault.InvalidArgs, "the request has IP, e-mail or URI subjectAltNames; [cert_issuance.%s] gives none", id)
	}
	if !onlyDNSNames(csr) {
		return fault.New(fault.InvalidArgs, "the request has a subjectAltName that is not a DNS name (an otherName, directoryName, registeredID...); [cert_issuance.%s] gives DNS names only", id)
	}
	if is.Method == "est" {
		return checkRequestedExtensions(id, is, csr)
	}
	return nil // certd's own issuance takes only the names of a request
}

var (
	oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtKeyUsage      = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidSubjectKeyID     = asn1.ObjectIdentifier{2, 5, 29, 14}
	oidServerAuth       = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 1}
	oidClientAuth       = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 2}
)

// checkRequestedExtensions: an EST server may copy the extensions a request
// asks for into what it issues under certd's credentials, so a request for
// an EST-configured id asks for no power its configuration does not give it. Besides
// the subjectAltName (checked by the caller) it may carry a subject key
// identifier, basicConstraints (CA only when the id is configured ca = true),
// keyUsage (certificate and CRL signing only for a CA) and the TLS extended
// key usages (serverAuth, clientAuth); anything else (name or policy
// constraints, OCSP or code signing, an unknown extension) is refused.
func checkRequestedExtensions(id string, is *config.Issuance, csr *x509.CertificateRequest) error {
	refuse := func(e pkix.Extension, what string) error {
		return fault.New(fault.InvalidArgs, "the request asks for extension %s (%s); [cert_issuance.%s] gives %q no such thing", e.Id, what, id, id)
	}
	for _, e := range csr.Extensions {
		switch {
		case e.Id.Equal(oidSubjectAltName), e.Id.Equal(oidSubjectKeyID):
		case e.Id.Equal(oidBasicConstraints):
			var bc struct {
				IsCA bool `asn1:"optional"`
				Len  int  `asn1:"optional,default:-1"`
			}
			if rest, err := asn1.Unmarshal(e.Value, &bc); err != nil || len(rest) > 0 {
				return refuse(e, "basicConstraints that do not parse")
			}
			if bc.IsCA && !is.CA {
				return refuse(e, "basicConstraints CA:TRUE")
			}
		case e.Id.Equal(oidKeyUsage):
			var ku asn1.BitString
			if rest, err := asn1.Unmarshal(e.Value, &ku); err != nil || len(rest) > 0 {
				return refuse(e, "a keyUsage that does not parse")
			}
			if !is.CA && (ku.At(5) == 1 || ku.At(6) == 1) {
				return refuse(e, "keyUsage keyCertSign or cRLSign")
			}
		case e.Id.Equal(oidExtKeyUsage):
			var ekus []asn1.ObjectIdentifier
			if rest, err := asn1.Unmarshal(e.Value, &ekus); err != nil || len(rest) > 0 {
				return refuse(e, "an extendedKeyUsage that does not parse")
			}
			for _, u := range ekus {
				if !u.Equal(oidServerAuth) && !u.Equal(oidClientAuth) {
					return refuse(e, "extendedKeyUsage "+u.String()+"; serverAuth and clientAuth only")
				}
			}
		default:
			return refuse(e, "an extension certd does not forward to its EST server")
		}
	}
	return nil
}

var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// onlyDNSNames reports whether every subjectAltName the request asks for
// is a dNSName. x509 reads DNS, IP, e-mail and URI names and skips the
// other kinds, but an EST server copies the request's extension whole.
func onlyDNSNames(csr *x509.CertificateRequest) bool {
	for _, e := range csr.Extensions {
		if !e.Id.Equal(oidSubjectAltName) {
			continue
		}
		var names []asn1.RawValue
		if rest, err := asn1.Unmarshal(e.Value, &names); err != nil || len(rest) > 0 {
			return false
		}
		for _, n := range names {
			if n.Class != asn1.ClassContextSpecific || n.Tag != 2 {
				return false
			}
		}
	}
	return true
}

// Create issues a certificate for a caller's CSR and stores it under id.
// The caller's authority (Authority) must already be checked.
func (s *Service) Create(ctx context.Context, id string, csrDER []byte, o CreateOptions) (Info, error) {
	if err := api.ValidateID(id); err != nil {
		return Info{}, err
	}
	if err := s.store.ReadOnly(id, "change"); err != nil {
		return Info{}, err
	}
	if _, err := s.Authority(id, o); err != nil {
		return Info{}, err
	}
	csr, err := ParseCSR(csrDER)
	if err != nil {
		return Info{}, err
	}
	if is, ok := s.cfg.Issuance[id]; ok {
		if err := checkSubject(id, is, csr); err != nil {
			return Info{}, err
		}
	}
	if o.Validity == 0 {
		o.Validity = 30 * 24 * time.Hour
		if is, ok := s.cfg.Issuance[id]; ok {
			o.Validity = is.Validity()
		}
	}
	if o.Validity < time.Second || o.Validity > 100*365*24*time.Hour {
		return Info{}, fault.New(fault.InvalidArgs, "validity %v is out of range (1 s .. 100 years)", o.Validity)
	}
	pathLen := -1
	if o.HasPathLen {
		pathLen = o.PathLen
	}
	s.issue.Lock()
	defer s.issue.Unlock()
	var chain []*x509.Certificate
	switch o.Issuer {
	case "self_signed":
		if o.KeyID == "" {
			return Info{}, fault.New(fault.InvalidArgs, "issuer self_signed needs option key_id: the key of the request")
		}
		signer, err := s.keys.Signer(ctx, o.KeyID)
		if err != nil {
			return Info{}, err
		}
		chain, err = IssueSelfSigned(csr, signer, Profile{Validity: o.Validity, CA: o.CA, PathLen: pathLen}, s.clock.Now())
		if err != nil {
			return Info{}, err
		}
	case "local_ca":
		if o.CA && !o.HasPathLen {
			pathLen = 0 // a caller's sub-CA issues leaves only, unless it asks
		}
		chain, err = s.issueLocalCA(ctx, csr, o.IssuerCert, Profile{Validity: o.Validity, CA: o.CA, PathLen: pathLen}, o.HasPathLen || o.CA)
		if err != nil {
			return Info{}, err
		}
	case "est":
		// The id's own EST server and label (Authority refused any other):
		// certd's EST credentials never go to a host, or a CA profile, the
		// caller chose.
		is := s.cfg.Issuance[id]
		chain, err = s.enrollEST(ctx, "", csrDER, is.URL, is.Label, false)
		if err != nil {
			return Info{}, err
		}
	}
	if err := s.store.Put(id, api.EncodeChain(chain)); err != nil {
		return Info{}, err
	}
	s.log.Info("certificate issued", "cert_id", id, "issuer", o.Issuer, "issuer_cert", o.IssuerCert, "ca", o.CA, "not_after", chain[0].NotAfter)
	s.wake()
	return s.Get(ctx, id)
}

// issueLocalCA signs as the CA caCertID with the key the configuration
// binds to it. A CA certificate's path length stays below the issuer's:
// boundPathLen refuses a p.PathLen at or above it; otherwise (configured
// issuance) the path length becomes the issuer's minus one.
func (s *Service) issueLocalCA(ctx context.Context, csr *x509.CertificateRequest, caCertID string, p Profile, explicitPathLen bool) ([]*x509.Certificate, error) {
	caKeyID, ok := s.cfg.CAKey(caCertID)
	if !ok {
		return nil, fault.New(fault.InvalidArgs, "option issuer_cert: %q is not a local CA in certd's configuration", caCertID)
	}
	ca, err := s.store.Get(caCertID)
	if err != nil {
		return nil, err
	}
	if p.CA {
		issuer := ca.Leaf()
		limited := issuer.MaxPathLen > 0 || (issuer.MaxPathLen == 0 && issuer.MaxPathLenZero)
		switch {
		case limited && issuer.MaxPathLen == 0:
			return nil, fault.New(fault.InvalidArgs, "option ca: CA %q has path length 0, so it cannot issue CA certificates", caCertID)
		case limited && explicitPathLen && p.PathLen >= issuer.MaxPathLen:
			return nil, fault.New(fault.InvalidArgs, "option path_len: %d is not below CA %q's path length %d", p.PathLen, caCertID, issuer.MaxPathLen)
		case limited && !explicitPathLen:
			p.PathLen = issuer.MaxPathLen - 1
		}
	}
	caKey, err := s.keys.Signer(ctx, caKeyID)
	if err != nil {
		return nil, err
	}
	return IssueFromCA(csr, ca.Chain, caKey, p, s.clock.Now())
}
