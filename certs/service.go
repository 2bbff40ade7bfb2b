package certs

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/edgev2/edgev2/certs/api"
	"github.com/edgev2/edgev2/certs/config"
	"github.com/edgev2/edgev2/certs/est"
	"github.com/edgev2/edgev2/internal/credential"
	"github.com/edgev2/edgev2/internal/fault"
)

// KeyStore is what certd needs of the Keys service: private keys stay
// there, and certd signs through crypto.Signers.
type KeyStore interface {
	// Signer returns a signer for an existing key (fault.NotFound if none).
	Signer(ctx context.Context, keyID string) (crypto.Signer, error)
	// CreateKeyPair makes the key if missing and returns its signer.
	CreateKeyPair(ctx context.Context, keyID, algorithms string) (crypto.Signer, error)
	// MoveKey renames a key, replacing the target.
	MoveKey(ctx context.Context, from, to string) error
	// DeleteKey removes a key.
	DeleteKey(ctx context.Context, keyID string) error
}

// Clock is the time source; tests inject a fake one so nothing sleeps.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// RealClock is the wall clock.
var RealClock Clock = realClock{}

// Service is the certificate store with its issuers and renewal engine.
type Service struct {
	store *Store
	keys  KeyStore
	cfg   *config.Config
	clock Clock
	log   *slog.Logger
	// ESTConfig lets tests adjust the EST client (e.g. its Sleep).
	ESTConfig func(*est.Config)
	// OnRenewed is called after a certificate was renewed.
	OnRenewed func(id string)

	issue sync.Mutex // one issuance at a time: issuance is rare, and it keeps key rotation simple

	mu    sync.Mutex
	retry map[string]retryState
	// lastSuccess is when each certificate was last issued by policy here,
	// for auto_renew.min_interval; pacedLogged: the pacing was logged once.
	lastSuccess map[string]time.Time
	pacedLogged map[string]bool
	revocation  map[string]RevocationState
	kick        chan struct{}
	// checkCRL asks Run for a CRL check now (a TLS failure said "revoked").
	checkCRL chan struct{}
}

type retryState struct {
	at       time.Time
	failures int
}

// NewService serves the store with the given configuration.
func NewService(store *Store, keys KeyStore, cfg *config.Config, clock Clock, log *slog.Logger) *Service {
	if clock == nil {
		clock = RealClock
	}
	if cfg.Issuance == nil {
		cfg.Issuance = map[string]*config.Issuance{}
	}
	return &Service{store: store, keys: keys, cfg: cfg, clock: clock, log: log,
		retry: map[string]retryState{}, lastSuccess: map[string]time.Time{}, pacedLogged: map[string]bool{},
		revocation: map[string]RevocationState{}, kick: make(chan struct{}, 1), checkCRL: make(chan struct{}, 1)}
}

// Get describes a certificate, with its RenewAt.
func (s *Service) Get(ctx context.Context, id string) (Info, error) {
	info, err := s.store.Get(id)
	if err != nil {
		return Info{}, err
	}
	info.RenewAt = s.renewAt(info)
	return info, nil
}

// Exists reports whether id names a certificate.
func (s *Service) Exists(id string) bool {
	_, err := s.store.Get(id)
	return err == nil || fault.Is(err, fault.Unavailable)
}

// List returns every certificate id.
func (s *Service) List() ([]string, error) { return s.store.List() }

// Import stores a PEM chain (leaf first) under id.
func (s *Service) Import(ctx context.Context, id, pemText string) (Info, error) {
	if err := api.ValidateID(id); err != nil {
		return Info{}, err
	}
	chain, err := api.ParseChainPEM(pemText)
	if err != nil {
		return Info{}, err
	}
	s.issue.Lock()
	defer s.issue.Unlock()
	if err := s.store.Put(id, api.EncodeChain(chain)); err != nil {
		return Info{}, err
	}
	s.log.Info("certificate imported", "cert_id", id, "subject", chain[0].Subject.String())
	s.wake()
	return s.Get(ctx, id)
}

// Delete removes a stored certificate.
func (s *Service) Delete(ctx context.Context, id string) error {
	s.issue.Lock()
	defer s.issue.Unlock()
	if err := s.store.Delete(id); err != nil {
		return err
	}
	s.log.Info("certificate deleted", "cert_id", id)
	s.wake()
	return nil
}

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
	ESTURL     string
	ESTLabel   string
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
	return nil
}

// Create issues a certificate for a caller's CSR and stores it under id.
// The caller's authority (Authority) must already be checked.
func (s *Service) Create(ctx context.Context, id string, csrDER []byte, o CreateOptions) (Info, error) {
	if err := api.ValidateID(id); err != nil {
		return Info{}, err
	}
	if s.store.IsPreloaded(id) {
		return Info{}, fault.New(fault.ReadOnly, "certificate %q is preloaded from the configuration", id)
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
		// Only configured EST servers: certd's EST credentials (Basic
		// password, EST identity) must never go to a caller-chosen host.
		if o.ESTURL != "" && !s.configuredESTURL(o.ESTURL) {
			return Info{}, fault.New(fault.InvalidArgs, "est_url %q is not a configured EST server ([est] url or a [cert_issuance] url)", o.ESTURL)
		}
		url, label := o.ESTURL, o.ESTLabel
		if url == "" {
			url = s.cfg.Issuance[id].URL
		}
		if label == "" {
			label = s.cfg.Issuance[id].Label
		}
		chain, err = s.enrollEST(ctx, "", csrDER, url, label, false)
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

// Ensure issues id per its [cert_issuance] policy if it is missing, expired
// or due for renewal, and returns it.
func (s *Service) Ensure(ctx context.Context, id string) (Info, error) {
	if err := api.ValidateID(id); err != nil {
		return Info{}, err
	}
	info, err := s.Get(ctx, id)
	if err == nil && (info.RenewAt.IsZero() || s.clock.Now().Before(info.RenewAt)) && s.clock.Now().Before(info.Leaf().NotAfter) {
		return info, nil
	}
	if err != nil && !fault.Is(err, fault.NotFound) {
		return Info{}, err
	}
	if _, ok := s.cfg.Issuance[id]; !ok {
		if err != nil {
			return Info{}, fault.New(fault.NotFound, "certificate %q not found and no [cert_issuance.%s] says how to issue it", id, id)
		}
		return info, nil // stored, not managed: nothing to renew
	}
	return s.renew(ctx, id, false)
}

// due reports whether a stored certificate needs issuing again.
func (s *Service) due(info Info) bool {
	now := s.clock.Now()
	return !now.Before(info.Leaf().NotAfter) || (!info.RenewAt.IsZero() && !now.Before(info.RenewAt))
}

// Renew issues id again now, per its [cert_issuance] policy. The old
// certificate (and key) stay in place until the new one is stored.
func (s *Service) Renew(ctx context.Context, id string) (Info, error) {
	return s.renew(ctx, id, true)
}

// renew issues id per policy; unless force, only if it is (still) missing
// or due once the issuance lock is held, so racing callers issue once.
func (s *Service) renew(ctx context.Context, id string, force bool) (Info, error) {
	return s.renewWith(ctx, id, renewOptions{force: force})
}

// renewOptions: force issues even when not due; fresh enrolls anew
// (simpleenroll with the EST identity) instead of re-enrolling with the
// certificate itself; rotate makes a new key whatever the policy says.
type renewOptions struct{ force, fresh, rotate bool }

func (s *Service) renewWith(ctx context.Context, id string, o renewOptions) (Info, error) {
	force := o.force
	if err := api.ValidateID(id); err != nil {
		return Info{}, err
	}
	is, ok := s.cfg.Issuance[id]
	if !ok {
		return Info{}, fault.New(fault.InvalidArgs, "certificate %q has no [cert_issuance.%s] policy, so it cannot be renewed here", id, id)
	}
	s.issue.Lock()
	defer s.issue.Unlock()
	old, oldErr := s.store.Get(id)
	if oldErr == nil && !force {
		if info, err := s.Get(ctx, id); err == nil && !s.due(info) {
			return info, nil // another caller issued it meanwhile
		}
	}
	rotate := (o.rotate || is.AutoRenew != nil && is.AutoRenew.RotateKey) && oldErr == nil
	keyID := is.KeyID
	if rotate {
		keyID = is.KeyID + ".next"
		// A leftover from an interrupted rotation: if the stored certificate
		// is already for it, finish that rotation instead of deleting the key.
		s.recoverRotation(ctx, id, is)
		_ = s.keys.DeleteKey(ctx, keyID)
		if old, oldErr = s.store.Get(id); oldErr != nil {
			return Info{}, oldErr
		}
	}
	algorithms := is.KeyAlgorithms
	var attrs *est.CSRAttrs
	if is.Method == "est" {
		attrs = s.estCSRAttrs(ctx, is)
		if hint := s.keyHint(attrs); hint != "" {
			algorithms = hint + ":" + algorithms // the CA asked for this key type (csrattrs)
		}
	}
	signer, err := s.keys.CreateKeyPair(ctx, keyID, algorithms)
	if err != nil {
		return Info{}, fmt.Errorf("key %q for certificate %q: %w", keyID, id, err)
	}
	subject := pkix.Name{CommonName: is.CommonName}
	if is.Organization != "" {
		subject.Organization = []string{is.Organization}
	}
	var csrDER []byte
	if oldErr == nil && is.Method == "est" {
		// Re-enrollment keeps the subject and subjectAltNames byte for byte (RFC 7030 4.2.2).
		csrDER, err = NewCSRLike(signer, old.Leaf())
	} else {
		csrDER, err = NewCSR(signer, subject, is.DNSNames)
	}
	if err != nil {
		return Info{}, err
	}
	if is.Method == "est" {
		if csrDER, err = s.addChallengePassword(csrDER, signer, attrs); err != nil {
			return Info{}, err
		}
	}
	csr, err := ParseCSR(csrDER)
	if err != nil {
		return Info{}, err
	}
	profile := Profile{Validity: is.Validity(), CA: is.CA, PathLen: -1}
	var chain []*x509.Certificate
	switch is.Method {
	case "self_signed":
		chain, err = IssueSelfSigned(csr, signer, profile, s.clock.Now())
	case "local_ca":
		chain, err = s.issueLocalCA(ctx, csr, is.IssuerCert, profile, false)
	case "est":
		reenrollAs := ""
		if oldErr == nil && !o.fresh && s.clock.Now().Before(old.Leaf().NotAfter) {
			reenrollAs = id // authenticate the re-enrollment with the certificate being renewed
		}
		chain, err = s.enrollEST(ctx, reenrollAs, csrDER, is.URL, is.Label, true)
	}
	if err != nil {
		if is.Method == "est" && strings.Contains(err.Error(), "revoked") {
			s.crlNow() // the server says a certificate of ours is revoked
		}
		return Info{}, err
	}
	if err := s.store.Put(id, api.EncodeChain(chain)); err != nil {
		return Info{}, err
	}
	if rotate {
		// The new certificate is stored; only now may the new key replace the old.
		if err := s.keys.MoveKey(ctx, keyID, is.KeyID); err != nil {
			return Info{}, fmt.Errorf("swap in the rotated key for %q: %w", id, err)
		}
	}
	s.mu.Lock()
	delete(s.retry, id)
	s.lastSuccess[id] = s.clock.Now()
	s.mu.Unlock()
	if oldErr != nil {
		s.log.Info("certificate issued by policy", "cert_id", id, "method", is.Method, "not_after", chain[0].NotAfter)
	} else {
		s.log.Info("certificate renewed", "cert_id", id, "method", is.Method, "rotated_key", rotate, "not_after", chain[0].NotAfter)
		if s.OnRenewed != nil {
			s.OnRenewed(id)
		}
	}
	s.wake()
	return s.Get(ctx, id)
}

// RecoverRotation finishes key rotations interrupted between storing the
// new certificate and swapping in its key. Call it before serving.
func (s *Service) RecoverRotation(ctx context.Context) {
	s.issue.Lock()
	defer s.issue.Unlock()
	for id, is := range s.cfg.Issuance {
		// Every policy: a revoked certificate is re-enrolled with a new
		// key even without rotate_key.
		s.recoverRotation(ctx, id, is)
	}
}

// recoverRotation: if the stored certificate matches the key kept under
// "<key>.next", that key is moved into place. s.issue is held.
func (s *Service) recoverRotation(ctx context.Context, id string, is *config.Issuance) {
	info, err := s.store.Get(id)
	if err != nil {
		return
	}
	next, err := s.keys.Signer(ctx, is.KeyID+".next")
	if err != nil {
		return
	}
	if samePublicKey(info.Leaf().PublicKey, next.Public()) {
		if err := s.keys.MoveKey(ctx, is.KeyID+".next", is.KeyID); err != nil {
			s.log.Error("finish interrupted key rotation", "cert_id", id, "err", err)
			return
		}
		s.log.Warn("finished a key rotation interrupted by a restart", "cert_id", id)
	}
}

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
	if s.ESTConfig != nil {
		s.ESTConfig(&cfg)
	}
	return est.New(cfg)
}

// crlNow asks Run for a CRL check at once.
func (s *Service) crlNow() {
	select {
	case s.checkCRL <- struct{}{}:
	default:
	}
}

func (s *Service) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
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
	file := e.ChallengePasswordFile
	if e.ChallengePasswordCredential != "" {
		var err error
		if file, err = credential.Path(e.ChallengePasswordCredential); err != nil {
			return nil, err
		}
	}
	if file == "" {
		s.log.Warn("the EST server asks for a challenge password, but [est] challenge_password_file is not set; sending the request without one")
		return csrDER, nil
	}
	pw, err := readChallengePassword(file)
	if err != nil {
		return nil, err
	}
	return WithChallengePassword(csrDER, signer, pw)
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

func (s *Service) configuredESTURL(u string) bool {
	if u == s.cfg.EST.URL {
		return true
	}
	for _, is := range s.cfg.Issuance {
		if is.URL == u {
			return true
		}
	}
	return false
}
