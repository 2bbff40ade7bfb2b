package certs

// EST enrollment: the client, its TLS identities and trust anchors, the
// challenge password and the CSR attributes a server asks for.
import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"

	"github.com/edgev2/edgev2/certs/api"
	"github.com/edgev2/edgev2/certs/config"
	"github.com/edgev2/edgev2/certs/est"
	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/credential"
)

// enrollEST enrolls csrDER over EST. reenrollAs names a stored certificate
// to renew with simplereenroll, authenticated by itself; "" is a fresh
// simpleenroll authenticated by the EST identity (enrolled with the bootstrap
// identity first when needed) or Basic credentials.
func (s *Service) enrollEST(ctx context.Context, reenrollAs string, csrDER []byte, urlOverride, label string, managed bool) ([]*x509.Certificate, error) {
	client, err := s.estClient(urlOverride, label)
	if err != nil {
		return nil, err
	}
	base := est.Auth{Username: s.cfg.EST.Username, Password: s.cfg.EST.Password}
	if reenrollAs != "" {
		auth := base
		if auth.ClientCert, err = s.tlsIdentity(ctx, reenrollAs, s.keyFor(reenrollAs)); err != nil {
			return nil, err
		}
		issued, err := client.SimpleReenroll(ctx, auth, csrDER)
		if err != nil {
			return nil, err
		}
		return s.completeChain(ctx, client, auth, issued)
	}
	auth, err := s.estIdentity(ctx, client, base)
	if err != nil {
		return nil, err
	}
	issued, err := client.SimpleEnroll(ctx, auth, csrDER)
	if err != nil {
		return nil, err
	}
	return s.completeChain(ctx, client, auth, issued)
}

// completeChain turns an enrollment answer (RFC 7030 4.2.3: usually the
// issued certificate alone) into the chain certd stores and presents: the
// leaf and its intermediates up to, not including, the trust anchor, built
// from the server's current /cacerts (so a CA rollover is picked up at the
// next renewal) and verified before anything is stored.
func (s *Service) completeChain(ctx context.Context, client *est.Client, auth est.Auth, issued []*x509.Certificate) ([]*x509.Certificate, error) {
	caCerts, err := client.CACerts(ctx, auth)
	if err != nil {
		return nil, fmt.Errorf("fetch the EST CA certificates to complete the chain: %w", err)
	}
	anchors, err := s.estAnchors()
	if err != nil {
		return nil, err
	}
	chain, err := est.BuildChain(issued[0], issued[1:], caCerts, anchors, s.clock.Now())
	if err != nil {
		return nil, err
	}
	if len(chain) > 1 {
		s.log.Debug("EST chain completed from /cacerts", "subject", chain[0].Subject.String(), "intermediates", len(chain)-1)
	}
	return chain, nil
}

// estAnchors are the configured EST trust anchors ([est] trusted_certs);
// nil when none are configured (the system roots then anchor TLS).
func (s *Service) estAnchors() (*x509.CertPool, error) {
	if len(s.cfg.EST.TrustedCerts) == 0 {
		return nil, nil
	}
	anchors := x509.NewCertPool()
	for _, id := range s.cfg.EST.TrustedCerts {
		info, err := s.store.Get(id)
		if err != nil {
			return nil, fmt.Errorf("EST trust anchor %q: %w", id, err)
		}
		for _, c := range info.Chain {
			anchors.AddCert(c)
		}
	}
	return anchors, nil
}

// keyFor is the key id a managed certificate's key lives under.
func (s *Service) keyFor(certID string) string {
	if is, ok := s.cfg.Issuance[certID]; ok {
		return is.KeyID
	}
	if certID == s.cfg.EST.IdentityCert {
		return s.cfg.EST.IdentityKey
	}
	if certID == s.cfg.EST.BootstrapIdentityCert {
		return s.cfg.EST.BootstrapIdentityKey
	}
	return certID
}

// estIdentity returns the credentials for a fresh enrollment: the EST
// identity certificate if configured (enrolling it with the bootstrap
// identity if it is missing or expired), else Basic credentials alone.
func (s *Service) estIdentity(ctx context.Context, client *est.Client, base est.Auth) (est.Auth, error) {
	e := s.cfg.EST
	if e.IdentityCert == "" {
		return base, nil
	}
	id, err := s.store.Get(e.IdentityCert)
	if err == nil && s.clock.Now().Before(id.Leaf().NotAfter) {
		auth := base
		auth.ClientCert, err = s.tlsIdentity(ctx, e.IdentityCert, e.IdentityKey)
		return auth, err
	}
	if err != nil && !fault.Is(err, fault.NotFound) {
		return est.Auth{}, err
	}
	// Enroll the EST identity, authenticated by the bootstrap identity.
	signer, err := s.keys.CreateKeyPair(ctx, e.IdentityKey, "ec-p256:*")
	if err != nil {
		return est.Auth{}, fmt.Errorf("EST identity key %q: %w", e.IdentityKey, err)
	}
	csrDER, err := NewCSR(signer, pkix.Name{CommonName: e.IdentityCert}, nil)
	if err != nil {
		return est.Auth{}, err
	}
	boot := base
	if e.BootstrapIdentityCert != "" {
		if boot.ClientCert, err = s.tlsIdentity(ctx, e.BootstrapIdentityCert, e.BootstrapIdentityKey); err != nil {
			return est.Auth{}, err
		}
	}
	attrs, err := client.CSRAttrs(ctx, boot)
	if err != nil {
		s.log.Warn("EST csrattrs unavailable for the EST identity's request", "err", err)
	}
	if csrDER, err = s.addChallengePassword(csrDER, signer, attrs); err != nil {
		return est.Auth{}, err
	}
	issued, err := client.SimpleEnroll(ctx, boot, csrDER)
	if err != nil {
		return est.Auth{}, fmt.Errorf("enroll the EST identity %q: %w", e.IdentityCert, err)
	}
	chain, err := s.completeChain(ctx, client, boot, issued)
	if err != nil {
		return est.Auth{}, fmt.Errorf("enroll the EST identity %q: %w", e.IdentityCert, err)
	}
	if err := s.store.Put(e.IdentityCert, api.EncodeChain(chain)); err != nil {
		return est.Auth{}, err
	}
	s.log.Info("EST identity enrolled with the bootstrap identity", "cert_id", e.IdentityCert, "not_after", chain[0].NotAfter)
	auth := base
	auth.ClientCert, err = s.tlsIdentity(ctx, e.IdentityCert, e.IdentityKey)
	return auth, err
}

// tlsIdentity is a TLS client certificate whose key stays in Keys.
func (s *Service) tlsIdentity(ctx context.Context, certID, keyID string) (*tls.Certificate, error) {
	info, err := s.store.Get(certID)
	if err != nil {
		return nil, fmt.Errorf("TLS identity %q: %w", certID, err)
	}
	signer, err := s.keys.Signer(ctx, keyID)
	if err != nil {
		return nil, fmt.Errorf("TLS identity key %q: %w", keyID, err)
	}
	if !samePublicKey(info.Leaf().PublicKey, signer.Public()) {
		return nil, fault.New(fault.InvalidArgs, "certificate %q does not belong to key %q", certID, keyID)
	}
	tc := &tls.Certificate{PrivateKey: signer, Leaf: info.Leaf()}
	for _, c := range info.Chain {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	return tc, nil
}

func (s *Service) estClient(urlOverride, label string) (*est.Client, error) {
	url := urlOverride
	if url == "" {
		url = s.cfg.EST.URL
	}
	if label == "" {
		label = s.cfg.EST.Label
	}
	if url == "" {
		return nil, fault.New(fault.InvalidArgs, "no EST URL: set [est] url or pass option est_url")
	}
	anchors, err := s.estAnchors()
	if err != nil {
		return nil, err
	}
	cfg := est.Config{URL: url, Label: label, TrustAnchors: anchors}
	if pw, err := s.challengePassword(); err == nil && pw != "" {
		cfg.Secrets = []string{pw}
	}
	if s.ESTConfig != nil {
		s.ESTConfig(&cfg)
	}
	return est.New(cfg)
}

// addChallengePassword puts the configured challenge password in an EST
// request when the server's csrattrs asks for it or the configuration says
// always. The secret is read from its file now and never logged.
func (s *Service) addChallengePassword(csrDER []byte, signer crypto.Signer, attrs *est.CSRAttrs) ([]byte, error) {
	e := s.cfg.EST
	asked := attrs != nil && attrs.ChallengePasswordRequested()
	if !asked && e.SendChallengePassword != "always" {
		return csrDER, nil
	}
	pw, err := s.challengePassword()
	if err != nil {
		return nil, err
	}
	if pw == "" {
		s.log.Warn("the EST server asks for a challenge password, but [est] challenge_password_file is not set; sending the request without one")
		return csrDER, nil
	}
	return WithChallengePassword(csrDER, signer, pw)
}

// challengePassword reads the configured challenge password from its file
// or credential now; "" when none is configured.
func (s *Service) challengePassword() (string, error) {
	e := s.cfg.EST
	file := e.ChallengePasswordFile
	if e.ChallengePasswordCredential != "" {
		var err error
		if file, err = credential.Path(e.ChallengePasswordCredential); err != nil {
			return "", err
		}
	}
	if file == "" {
		return "", nil
	}
	return readChallengePassword(file)
}

// estCSRAttrs asks the EST server's /csrattrs what it wants in a CSR
// (RFC 7030 4.5); nil when it has nothing or does not answer.
func (s *Service) estCSRAttrs(ctx context.Context, is *config.Issuance) *est.CSRAttrs {
	client, err := s.estClient(is.URL, is.Label)
	if err != nil {
		return nil
	}
	auth := est.Auth{Username: s.cfg.EST.Username, Password: s.cfg.EST.Password}
	if id := s.cfg.EST.IdentityCert; id != "" {
		if info, err := s.store.Get(id); err == nil && s.clock.Now().Before(info.Leaf().NotAfter) {
			auth.ClientCert, _ = s.tlsIdentity(ctx, id, s.cfg.EST.IdentityKey)
		}
	}
	attrs, err := client.CSRAttrs(ctx, auth)
	if err != nil {
		s.log.Warn("EST csrattrs unavailable; using the configured key type", "err", err)
		return nil
	}
	return attrs
}

// keyHint returns the key type csrattrs asks for (RFC 7030 4.5.2) as a
// Keys algorithm name, or "" when the server has no preference or asks for
// a type Keys cannot make.
func (s *Service) keyHint(attrs *est.CSRAttrs) string {
	if attrs == nil {
		return ""
	}
	hint, ok := attrs.KeyHint()
	if !ok {
		return ""
	}
	switch t := hint.Type(); t {
	case "ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096":
		return t
	default:
		if t != "" {
			s.log.Warn("EST server asks for a key type the Keys service cannot make", "type", t)
		}
		return ""
	}
}

// estURLOf and estLabelOf are where a configured EST id enrolls: its own
// url and label, else [est]'s (as estClient resolves them).
func (s *Service) estURLOf(is *config.Issuance) string {
	if is.URL != "" {
		return is.URL
	}
	return s.cfg.EST.URL
}

func (s *Service) estLabelOf(is *config.Issuance) string {
	if is.Label != "" {
		return is.Label
	}
	return s.cfg.EST.Label
}
