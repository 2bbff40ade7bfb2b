package est

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/atomicfile"
)

// Files of the CA in its state directory, all 0600.
const (
	caKeyFile  = "ca-key.pem" // PKCS#8 EC P-256 private key of the issuing CA
	caCertFile = "ca-cert.pem"
	// With [est] intermediate, the issuing CA is signed by a root kept here.
	rootKeyFile  = "root-key.pem"
	rootCertFile = "root-cert.pem"
	indexFile    = "issued.json" // every certificate issued over EST, and revocations
	skewBackdate = time.Minute   // notBefore is backdated for clients with slow clocks
)

var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// ca is a local certificate authority whose key, certificate and index of
// issued certificates live in one state directory.
type ca struct {
	dir  string
	cert *x509.Certificate // the issuing CA
	key  crypto.Signer
	// root is the trust anchor above an intermediate issuing CA; nil when
	// the issuing CA is itself the (self-signed) root.
	root *x509.Certificate

	mu       sync.Mutex
	idx      index
	bySerial map[string]int // hex serial -> idx.Certs position
}

// index is issued.json.
type index struct {
	// CRLNumber grows with every revocation (RFC 5280 5.2.3).
	CRLNumber int64    `json:"crl_number"`
	Certs     []record `json:"certs"`
}

type record struct {
	Serial    string     `json:"serial"` // lower-case hex
	Subject   string     `json:"subject"`
	NotAfter  time.Time  `json:"not_after"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	DER       []byte     `json:"der"`
}

// openCA loads the CA in dir, or makes one (key, then self-signed
// certificate) when dir has none yet.
// With intermediate, a first start makes a root and an issuing CA under
// it; a state directory that already has a root keeps using it.
func openCA(dir string, cfg CAConfig, intermediate bool, now time.Time) (*ca, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("make state directory: %w", err)
	}
	c := &ca{dir: dir, bySerial: map[string]int{}}
	_, statErr := os.Stat(filepath.Join(dir, rootCertFile))
	_, caErr := os.Stat(filepath.Join(dir, caCertFile))
	var rootKey crypto.Signer
	if statErr == nil || (intermediate && errors.Is(caErr, os.ErrNotExist)) {
		var err error
		if rootKey, err = loadOrCreateKey(filepath.Join(dir, rootKeyFile)); err != nil {
			return nil, err
		}
		rootCfg := cfg
		rootCfg.CommonName += " Root"
		if c.root, err = loadOrCreateCert(filepath.Join(dir, rootCertFile), rootKey, func(path string) ([]byte, error) {
			return createCACert(path, rootKey, rootCfg, nil, nil, now)
		}); err != nil {
			return nil, fmt.Errorf("root CA certificate: %w", err)
		}
	}
	key, err := loadOrCreateKey(filepath.Join(dir, caKeyFile))
	if err != nil {
		return nil, err
	}
	c.key = key
	if c.cert, err = loadOrCreateCert(filepath.Join(dir, caCertFile), key, func(path string) ([]byte, error) {
		if c.root != nil {
			return createCACert(path, key, cfg, c.root, rootKey, now)
		}
		return createCACert(path, key, cfg, nil, nil, now)
	}); err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	if c.root != nil {
		if err := c.cert.CheckSignatureFrom(c.root); err != nil {
			return nil, fmt.Errorf("%s is not signed by %s: %w", caCertFile, rootCertFile, err)
		}
	}
	if err := c.loadIndex(); err != nil {
		return nil, err
	}
	return c, nil
}

// loadOrCreateCert reads the PEM certificate at path, making it with create
// when missing, and checks that it belongs to key.
func loadOrCreateCert(path string, key crypto.Signer, create func(string) ([]byte, error)) (*x509.Certificate, error) {
	pemBytes, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		pemBytes, err = create(path)
	}
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, fmt.Errorf("%s does not belong to its key", path)
	}
	return cert, nil
}

// anchor is the trust anchor of everything this CA issues: the root.
func (c *ca) anchor() *x509.Certificate {
	if c.root != nil {
		return c.root
	}
	return c.cert
}

// chain is the issuing CA and the certificates above it, root last.
func (c *ca) chain() []*x509.Certificate {
	if c.root != nil {
		return []*x509.Certificate{c.cert, c.root}
	}
	return []*x509.Certificate{c.cert}
}

func loadOrCreateKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		k, gerr := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if gerr != nil {
			return nil, fmt.Errorf("generate CA key: %w", gerr)
		}
		der, merr := x509.MarshalPKCS8PrivateKey(k)
		if merr != nil {
			return nil, fmt.Errorf("encode CA key: %w", merr)
		}
		data = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		err = atomicfile.Create(path, data, 0o600)
		if errors.Is(err, os.ErrExist) { // another process won the race: use its key
			data, err = os.ReadFile(path)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("CA key %s: %w", path, err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s holds no PEM private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse CA key %s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("CA key %s cannot sign", path)
	}
	return s, nil
}

// createCACert makes a CA certificate for key: self-signed when parent is
// nil, else an intermediate (path length 0) signed by parentKey.
func createCACert(path string, key crypto.Signer, cfg CAConfig, parent *x509.Certificate, parentKey crypto.Signer, now time.Time) ([]byte, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cfg.CommonName, Organization: []string{cfg.Organization}},
		NotBefore:             now.Add(-skewBackdate),
		NotAfter:              now.Add(time.Duration(cfg.Validity)),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          keyID(key.Public()),
	}
	signer, issuer := key, tmpl
	if parent != nil {
		signer, issuer = parentKey, parent
		tmpl.MaxPathLenZero = true
		if tmpl.NotAfter.After(parent.NotAfter) {
			tmpl.NotAfter = parent.NotAfter
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("sign CA certificate: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := atomicfile.Create(path, data, 0o600); err != nil {
		if errors.Is(err, os.ErrExist) {
			return os.ReadFile(path)
		}
		return nil, err
	}
	return data, nil
}

func (c *ca) loadIndex() error {
	data, err := os.ReadFile(filepath.Join(c.dir, indexFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read index: %w", err)
	}
	if err := json.Unmarshal(data, &c.idx); err != nil {
		return fmt.Errorf("parse %s: %w", filepath.Join(c.dir, indexFile), err)
	}
	for i, r := range c.idx.Certs {
		c.bySerial[r.Serial] = i
	}
	return nil
}

// saveIndex writes issued.json; c.mu is held.
func (c *ca) saveIndex() error {
	data, err := json.MarshalIndent(&c.idx, "", " ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(c.dir, indexFile), data, 0o600)
}

// issueParams says what goes into a certificate beyond the CA's profile.
type issueParams struct {
	publicKey  crypto.PublicKey
	rawSubject []byte          // DER Name, copied byte for byte from the CSR
	san        *pkix.Extension // copied from the CSR
	dnsNames   []string        // used when san is nil
	ipAddrs    []net.IP
	validity   time.Duration
	crlURL     string
	record     bool // keep in the index (EST-issued), so it can be revoked
}

// issue signs a leaf certificate: digitalSignature (+keyEncipherment for
// RSA), clientAuth+serverAuth, SKID/AKID, never valid beyond the CA.
func (c *ca) issue(p issueParams, now time.Time) (*x509.Certificate, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	ku := x509.KeyUsageDigitalSignature
	if _, ok := p.publicKey.(*rsa.PublicKey); ok {
		ku |= x509.KeyUsageKeyEncipherment
	}
	notAfter := now.Add(p.validity)
	if notAfter.After(c.cert.NotAfter) {
		notAfter = c.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		RawSubject:            p.rawSubject,
		NotBefore:             now.Add(-skewBackdate),
		NotAfter:              notAfter,
		KeyUsage:              ku,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		SubjectKeyId:          keyID(p.publicKey),
		DNSNames:              p.dnsNames,
		IPAddresses:           p.ipAddrs,
	}
	if p.san != nil {
		tmpl.ExtraExtensions = []pkix.Extension{*p.san}
	}
	if p.crlURL != "" {
		tmpl.CRLDistributionPoints = []string{p.crlURL}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, p.publicKey, c.key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse issued certificate: %w", err)
	}
	if !p.record {
		return cert, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	hexSerial := cert.SerialNumber.Text(16)
	c.idx.Certs = append(c.idx.Certs, record{Serial: hexSerial, Subject: cert.Subject.String(), NotAfter: cert.NotAfter, DER: der})
	c.bySerial[hexSerial] = len(c.idx.Certs) - 1
	if err := c.saveIndex(); err != nil {
		c.idx.Certs = c.idx.Certs[:len(c.idx.Certs)-1]
		delete(c.bySerial, hexSerial)
		return nil, fmt.Errorf("record issued certificate: %w", err)
	}
	return cert, nil
}

// revoke marks an issued serial revoked; revoking twice is not an error.
func (c *ca) revoke(serial *big.Int, now time.Time) error {
	if serial == nil {
		return fault.New(fault.InvalidArgs, "no serial number given")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	i, ok := c.bySerial[serial.Text(16)]
	if !ok {
		return fault.New(fault.NotFound, "no certificate with serial %s was issued by this CA", serial.Text(16))
	}
	if c.idx.Certs[i].RevokedAt != nil {
		return nil
	}
	t := now.UTC().Truncate(time.Second)
	c.idx.Certs[i].RevokedAt = &t
	c.idx.CRLNumber++
	if err := c.saveIndex(); err != nil {
		c.idx.Certs[i].RevokedAt = nil
		c.idx.CRLNumber--
		return fmt.Errorf("record revocation: %w", err)
	}
	return nil
}

func (c *ca) isRevoked(serial *big.Int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	i, ok := c.bySerial[serial.Text(16)]
	return ok && c.idx.Certs[i].RevokedAt != nil
}

func (c *ca) issued() []*x509.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*x509.Certificate, 0, len(c.idx.Certs))
	for _, r := range c.idx.Certs {
		if cert, err := x509.ParseCertificate(r.DER); err == nil {
			out = append(out, cert)
		}
	}
	return out
}

// certPEM is the root CA certificate, the trust anchor clients use.
func (c *ca) certPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.anchor().Raw})
}

func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("random serial: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// keyID is the SHA-256 of subjectPublicKey truncated to 160 bits (RFC 7093 method 1).
func keyID(pub crypto.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil
	}
	sum := sha256.Sum256(spki.PublicKey.Bytes)
	return sum[:20]
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}
