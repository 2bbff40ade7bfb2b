package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	certsapi "github.com/edgev2/edgev2/certs/api"
	cclient "github.com/edgev2/edgev2/certs/client"
	"github.com/edgev2/edgev2/fault"
	iclient "github.com/edgev2/edgev2/identity/client"
	kclient "github.com/edgev2/edgev2/keys/client"
	"github.com/edgev2/edgev2/modrt"
	rtconfig "github.com/edgev2/edgev2/modrt/config"
	"github.com/edgev2/edgev2/modrt/ctrd"
	"github.com/edgev2/edgev2/modrt/modspec"
	"github.com/edgev2/edgev2/modrt/workload"
)

// workloadBackend serves the workload API from the Identity, Keys and
// Certificates services and the runtime's view of module processes.
type workloadBackend struct {
	owners        *modrt.PidOwners
	ids           *iclient.Client
	signer        *workload.ModuleSigner
	certs         *cclient.Client
	trust         string // Certificates id of the trust bundle ("" none)
	manifestTrust string // Certificates id of the manifest trust bundle
	encryption    workload.Encryption
	ca            *edgeCA
	names         rtconfig.WorkloadConfig // server certificate names granted to modules
	modules       mgmtModules
}

// Module is a module's status and spec for the workload module list.
func (b workloadBackend) Module(ctx context.Context, module string) (ctrd.Status, *modspec.Spec, error) {
	return b.modules.Get(ctx, module)
}

var _ workload.Backend = workloadBackend{}

func (b workloadBackend) SignAsModule(ctx context.Context, module, key string, data []byte) ([]byte, error) {
	return b.signer.SignAsModule(ctx, module, key, data)
}

// signerSource is workload.SignerSource over the Identity client; the
// session identityd hands out is spoken to with the Keys client.
type signerSource struct{ ids *iclient.Client }

func (s signerSource) OpenModuleSigner(ctx context.Context) (workload.SignerSession, string, error) {
	f, keyID, err := s.ids.OpenModuleSigner(ctx)
	if err != nil {
		return nil, "", err
	}
	sess, err := kclient.SessionFromFile(f)
	if err != nil {
		return nil, "", err
	}
	return sess, keyID, nil
}

func (s signerSource) ModuleSigning(ctx context.Context, module string) ([]byte, []byte, error) {
	d, err := s.ids.ModuleSigning(ctx, module)
	if err != nil {
		return nil, nil, err
	}
	p, q := d.Primary, d.Secondary
	if len(p) == 0 || len(q) == 0 {
		return nil, nil, fault.New(fault.Failed, "identityd named no derivations for module %q", module)
	}
	return p, q, nil
}

func (s signerSource) SignAsModule(ctx context.Context, module, key string, data []byte) ([]byte, error) {
	return s.ids.SignAsModule(ctx, module, key, data)
}

// TrustBundle is the configured trust bundle plus the edge CA, each
// certificate once.
func (b workloadBackend) TrustBundle(ctx context.Context) (string, error) {
	var all []*x509.Certificate
	if b.trust != "" {
		pemText, err := b.certs.Get(ctx, b.trust)
		if err != nil {
			return "", err
		}
		chain, err := certsapi.ParseChainPEM(pemText)
		if err != nil {
			return "", err
		}
		all = append(all, chain...)
	}
	ca, err := b.ca.Ensure(ctx)
	if err != nil {
		return "", err
	}
	// The CA itself: a chain's last certificate.
	all = append(all, ca[len(ca)-1])
	return bundle(all), nil
}

// ManifestTrustBundle is the configured manifest trust bundle, or an
// empty one (as aziot-edged answers when none is set).
func (b workloadBackend) ManifestTrustBundle(ctx context.Context) (string, error) {
	if b.manifestTrust == "" {
		return "", nil
	}
	pemText, err := b.certs.Get(ctx, b.manifestTrust)
	if fault.Is(err, fault.NotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	chain, err := certsapi.ParseChainPEM(pemText)
	if err != nil {
		return "", err
	}
	return bundle(chain), nil
}

// bundle renders certificates as PEM, dropping repeats.
func bundle(cs []*x509.Certificate) string {
	seen := map[string]bool{}
	var out []*x509.Certificate
	for _, c := range cs {
		if !seen[string(c.Raw)] {
			seen[string(c.Raw)] = true
			out = append(out, c)
		}
	}
	return certsapi.EncodeChain(out)
}

// ServerCert makes a key for the module (it is the module's to keep, so it
// is made here and handed over, as aziot-edged does), and has certd issue
// the certificate under the edge CA.
func (b workloadBackend) ServerCert(ctx context.Context, module, commonName string, notAfter time.Time) (string, string, error) {
	// Every module's request needs the gateway's name: edgeHub may get
	// it, and no other module may by being named like it.
	gateway := ""
	if dev, err := b.ids.DeviceIdentity(ctx); err == nil {
		gateway = dev.GatewayHostname
	}
	if gateway == "" {
		gateway, _ = os.Hostname() // as ModuleEnv's IOTEDGE_GATEWAYHOSTNAME
	}
	if !b.names.ServerCertNameAllowed(module, commonName, gateway) {
		return "", "", fault.New(fault.NotAuthorized, "module %q may get server certificates only for its own name (or names [workload.server_cert_names] in modrtd.toml grants it), not %q", module, commonName)
	}
	return b.issue(ctx, "module-server-"+module, serverCSR(module, commonName, gateway, b.names), time.Until(notAfter))
}

// serverCSR is a module's server certificate request as aziot-edged makes
// it: the common name as the first subject alternative name (an IP
// address or a DNS name, as it reads), and the module's own name beside it,
// here only where the module may have its own name at all.
func serverCSR(module, commonName, gateway string, names rtconfig.WorkloadConfig) *x509.CertificateRequest {
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: commonName}}
	if ip := net.ParseIP(commonName); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{commonName}
	}
	if !strings.EqualFold(commonName, module) && names.ServerCertNameAllowed(module, module, gateway) {
		tmpl.DNSNames = append(tmpl.DNSNames, module)
	}
	return tmpl
}

// IdentityCert is the module's client certificate: CN the module, and the
// module's IoT Hub identity as a URI (azureiot://hub/devices/d/modules/m).
func (b workloadBackend) IdentityCert(ctx context.Context, module string) (string, string, error) {
	dev, err := b.ids.DeviceIdentity(ctx)
	if err != nil {
		return "", "", err
	}
	uri := &url.URL{Scheme: "azureiot", Host: dev.HubHostname, Path: "/devices/" + dev.DeviceID + "/modules/" + module}
	return b.issue(ctx, "module-identity-"+module, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: module}, URIs: []*url.URL{uri}}, moduleIdentityLifetime)
}

// moduleIdentityLifetime bounds module identity certificates; modules ask
// again before expiry (the edge CA's own end bounds it too).
const moduleIdentityLifetime = 30 * 24 * time.Hour

func (b workloadBackend) issue(ctx context.Context, id string, tmpl *x509.CertificateRequest, validity time.Duration) (string, string, error) {
	if _, err := b.ca.Ensure(ctx); err != nil {
		return "", "", fault.Wrap(fault.Unavailable, err, "the edge CA is not available: %s", fault.Message(err))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return "", "", err
	}
	chain, err := b.certs.Create(ctx, id, csr, cclient.CreateOptions{
		Issuer: "local_ca", IssuerCert: b.ca.certID, Validity: validity.Round(time.Second)})
	if err != nil {
		return "", "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	return chain, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), nil
}

// Encrypt and Decrypt are the workload API's per-module encryption
// (workload.Encryption).
func (b workloadBackend) Encrypt(ctx context.Context, module, genID string, plaintext, iv []byte) ([]byte, error) {
	return b.encryption.Encrypt(ctx, module, genID, plaintext, iv)
}

func (b workloadBackend) Decrypt(ctx context.Context, module, genID string, ciphertext, iv []byte) ([]byte, error) {
	return b.encryption.Decrypt(ctx, module, genID, ciphertext, iv)
}

// newEncryption wires workload.Encryption to the Keys and Identity services.
func newEncryption(kc *kclient.Client, ids *iclient.Client, masterKey string) workload.Encryption {
	return workload.Encryption{Keys: derivedCipher{kc}, MasterKey: masterKey, Generation: identityDirectory{ids}.ModuleGeneration}
}

// derivedCipher is workload.DerivedCipher over the Keys client.
type derivedCipher struct{ kc *kclient.Client }

func (d derivedCipher) EnsureMaster(ctx context.Context, id string) error {
	_, err := d.kc.CreateKey(ctx, id, "derive", nil)
	return err
}
func (d derivedCipher) EncryptDerived(ctx context.Context, id string, derivation, plaintext, iv []byte) ([]byte, error) {
	return d.kc.Key(id).EncryptDerived(ctx, derivation, plaintext, iv, nil)
}
func (d derivedCipher) DecryptDerived(ctx context.Context, id string, derivation, ciphertext, iv []byte) ([]byte, error) {
	return d.kc.Key(id).DecryptDerived(ctx, derivation, ciphertext, iv, nil)
}

// OwnsPid is the runtime's one pid-ownership rule (modrt.PidOwners), the
// same the management API uses.
func (b workloadBackend) OwnsPid(ctx context.Context, module string, pid int32) bool {
	return b.owners.Owns(ctx, module, pid)
}

// identityDirectory is modrt.IdentityDirectory over the Identity client.
type identityDirectory struct{ ids *iclient.Client }

func (d identityDirectory) Device(ctx context.Context) (modrt.Device, error) {
	dev, err := d.ids.DeviceIdentity(ctx)
	if err != nil {
		return modrt.Device{}, err
	}
	return modrt.Device{DeviceID: dev.DeviceID, HubHostname: dev.HubHostname, GatewayHostname: dev.GatewayHostname}, nil
}
func (d identityDirectory) ModuleGeneration(ctx context.Context, module string) (string, error) {
	mod, err := d.ids.Module(ctx, module)
	return mod.GenerationID, err
}
func (d identityDirectory) CreateModule(ctx context.Context, module string) (string, error) {
	mod, err := d.ids.CreateModule(ctx, module, "edgev2-modrtd")
	return mod.GenerationID, err
}
