package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/edgev2/edgev2/certs"
	cclient "github.com/edgev2/edgev2/certs/client"
	iclient "github.com/edgev2/edgev2/identity/client"
	"github.com/edgev2/edgev2/internal/fault"
	kclient "github.com/edgev2/edgev2/keys/client"
	"github.com/edgev2/edgev2/modrt"
	"github.com/edgev2/edgev2/modrt/workload"
)

// workloadBackend serves the workload API from the Identity, Keys and
// Certificates services and the runtime's view of module processes.
type workloadBackend struct {
	rt            *modrt.Runtime
	ids           *iclient.Client
	certs         *cclient.Client
	keys          *kclient.Client
	trust         string // Certificates id of the trust bundle ("" none)
	manifestTrust string // Certificates id of the manifest trust bundle
	encryptionKey string // Keys id of the workload encryption key
	ca            *edgeCA
	names         modrt.WorkloadConfig // server certificate names granted to modules
}

var _ workload.Backend = workloadBackend{}

func (b workloadBackend) SignAsModule(ctx context.Context, module, key string, data []byte) ([]byte, error) {
	return b.ids.SignAsModule(ctx, module, key, data)
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
		chain, err := certs.ParseChainPEM(pemText)
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
	chain, err := certs.ParseChainPEM(pemText)
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
	return certs.EncodeChain(out)
}

// ServerCert makes a key for the module (it is the module's to keep, so it
// is made here and handed over, as aziot-edged does), and has certd issue
// the certificate under the edge CA.
func (b workloadBackend) ServerCert(ctx context.Context, module, commonName string, notAfter time.Time) (string, string, error) {
	gateway := ""
	if module == modrt.EdgeHubModule {
		if dev, err := b.ids.DeviceIdentity(ctx); err == nil {
			gateway = dev.S("gateway_hostname")
		}
		if gateway == "" {
			gateway, _ = os.Hostname() // as ModuleEnv's IOTEDGE_GATEWAYHOSTNAME
		}
	}
	if !b.names.ServerCertNameAllowed(module, commonName, gateway) {
		return "", "", fault.New(fault.NotAuthorized, "module %q may get server certificates only for its own name (or names [workload.server_cert_names] in modrtd.toml grants it), not %q", module, commonName)
	}
	return b.issue(ctx, "module-server-"+module, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: commonName}, DNSNames: []string{commonName}}, time.Until(notAfter))
}

// IdentityCert is the module's client certificate: CN the module, and the
// module's IoT Hub identity as a URI (azureiot://hub/devices/d/modules/m).
func (b workloadBackend) IdentityCert(ctx context.Context, module string) (string, string, error) {
	dev, err := b.ids.DeviceIdentity(ctx)
	if err != nil {
		return "", "", err
	}
	uri := &url.URL{Scheme: "azureiot", Host: dev.S("hub_hostname"), Path: "/devices/" + dev.S("device_id") + "/modules/" + module}
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

// Encrypt is AES-256-GCM with the workload key; the additional data is
// module id + generation id, as aziot-edged binds it.
func (b workloadBackend) Encrypt(ctx context.Context, module, genID string, plaintext, iv []byte) ([]byte, error) {
	key, err := b.encryption(ctx)
	if err != nil {
		return nil, err
	}
	return key.Encrypt(ctx, "aes-256-gcm", plaintext, gcmNonce(iv), []byte(module+genID))
}

func (b workloadBackend) Decrypt(ctx context.Context, module, genID string, ciphertext, iv []byte) ([]byte, error) {
	key, err := b.encryption(ctx)
	if err != nil {
		return nil, err
	}
	return key.Decrypt(ctx, "aes-256-gcm", ciphertext, gcmNonce(iv), []byte(module+genID))
}

// encryption returns the workload key, made on first use.
func (b workloadBackend) encryption(ctx context.Context) (*kclient.Key, error) {
	return b.keys.CreateKey(ctx, b.encryptionKey, "encrypt", nil)
}

// gcmNonce maps the caller's initialization vector to GCM's 96-bit nonce:
// SDKs send IVs of any length (aziot-keyd hands them to OpenSSL's GCM,
// which hashes other lengths with GHASH); Keys takes exactly 12 bytes, so
// other lengths are hashed here. Equal IVs give equal nonces either way,
// so the caller's IV keeps its meaning.
func gcmNonce(iv []byte) []byte {
	if len(iv) == 12 {
		return iv
	}
	sum := sha256.Sum256(append([]byte("edgev2 workload iv\x00"), iv...))
	return sum[:12]
}

// OwnsPid: a process is the module's if it lives in the pid namespace of
// the module's task (two readlinks, no containerd round trip); modules that
// share the host's pid namespace fall back to the task's process list.
func (b workloadBackend) OwnsPid(ctx context.Context, module string, pid int32) bool {
	// A module may call in the instant its task starts, before the runtime
	// has recorded it: look again for up to a second before refusing.
	for i := 0; i < 20; i++ {
		if b.ownsPid(ctx, module, pid) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
	return false
}

func (b workloadBackend) ownsPid(ctx context.Context, module string, pid int32) bool {
	st, err := b.rt.Status(ctx, module)
	if err != nil {
		return false
	}
	if st.Pid != 0 {
		hostNS, _ := os.Readlink("/proc/self/ns/pid")
		taskNS, err1 := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", st.Pid))
		peerNS, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
		if err1 == nil && err2 == nil && taskNS != hostNS && peerNS == taskNS {
			return true
		}
	}
	// Not shown by the fast path (the task just started and its pid is not
	// recorded yet, or it shares the host's pid namespace): ask containerd.
	pids, err := b.rt.Pids(ctx, module)
	if err != nil {
		return false
	}
	for _, p := range pids {
		if int32(p) == pid {
			return true
		}
	}
	return false
}

// moduleIdentities gives each module an identity in IoT Hub (creating it
// if missing) and the IOTEDGE_* environment aziot-edged gives modules.
type moduleIdentities struct{ ids *iclient.Client }

func (m moduleIdentities) ModuleEnv(ctx context.Context, module string) (map[string]string, error) {
	dev, err := m.ids.DeviceIdentity(ctx)
	if err != nil {
		return nil, err
	}
	mod, err := m.ids.Module(ctx, module)
	if fault.Is(err, fault.NotFound) {
		mod, err = m.ids.CreateModule(ctx, module, "edgev2-modrtd")
	}
	if err != nil {
		return nil, err
	}
	gateway := dev.S("gateway_hostname")
	if gateway == "" {
		gateway, _ = os.Hostname()
	}
	return map[string]string{
		"IOTEDGE_WORKLOADURI":        "unix:///var/run/iotedge/workload.sock",
		"IOTEDGE_DEVICEID":           dev.S("device_id"),
		"IOTEDGE_MODULEID":           module,
		"IOTEDGE_MODULEGENERATIONID": mod.S("generation_id"),
		"IOTEDGE_IOTHUBHOSTNAME":     dev.S("hub_hostname"),
		"IOTEDGE_AUTHSCHEME":         "sasToken",
		"IOTEDGE_APIVERSION":         "2019-01-30",
		"IOTEDGE_GATEWAYHOSTNAME":    gateway,
	}, nil
}
