package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/edgev2/edgev2/certs"
	cclient "github.com/edgev2/edgev2/certs/client"
	iclient "github.com/edgev2/edgev2/identity/client"
	"github.com/edgev2/edgev2/internal/fault"
	"github.com/edgev2/edgev2/modrt"
	"github.com/edgev2/edgev2/modrt/workload"
)

// workloadBackend serves the workload API from the Identity and
// Certificates services and the runtime's view of module processes.
type workloadBackend struct {
	rt             *modrt.Runtime
	ids            *iclient.Client
	certs          *cclient.Client
	trust          string
	edgeCA, edgeCK string // edge CA certificate and key ids
}

var _ workload.Backend = workloadBackend{}

func (b workloadBackend) SignAsModule(ctx context.Context, module, key string, data []byte) ([]byte, error) {
	return b.ids.SignAsModule(ctx, module, key, data)
}

// TrustBundle is the configured trust bundle plus the edge CA.
func (b workloadBackend) TrustBundle(ctx context.Context) (string, error) {
	if b.trust == "" && b.edgeCA == "" {
		return "", fault.New(fault.NotFound, "no trust bundle is configured (trust_bundle or edge_ca_cert in modrtd.toml)")
	}
	var bundle strings.Builder
	for _, id := range []string{b.trust, b.edgeCA} {
		if id == "" {
			continue
		}
		pemText, err := b.certs.Get(ctx, id)
		if err != nil {
			return "", err
		}
		chain, err := certs.ParseChainPEM(pemText)
		if err != nil {
			return "", err
		}
		// The CA itself: a chain's last certificate.
		bundle.WriteString(certs.EncodeChain(chain[len(chain)-1:]))
	}
	return bundle.String(), nil
}

// ServerCert makes a key for the module (it is the module's to keep, so it
// is made here and handed over, as aziot-edged does), and has certd issue
// the certificate under the edge CA.
func (b workloadBackend) ServerCert(ctx context.Context, module, commonName string, notAfter time.Time) (string, string, error) {
	if b.edgeCA == "" || b.edgeCK == "" {
		return "", "", fault.New(fault.Unavailable, "no edge CA is configured (edge_ca_cert and edge_ca_key in modrtd.toml)")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	csr, err := certs.NewCSR(key, pkix.Name{CommonName: commonName}, []string{commonName})
	if err != nil {
		return "", "", err
	}
	chain, err := b.certs.Create(ctx, "module-server-"+module, csr, cclient.CreateOptions{
		Issuer: "local_ca", IssuerCert: b.edgeCA, IssuerKey: b.edgeCK, Validity: time.Until(notAfter).Round(time.Second)})
	if err != nil {
		return "", "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	return chain, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), nil
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
