package e2e_test

import (
	"context"
	"strings"
	"testing"
	"time"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/internal/superconfig"
	"github.com/edgev2/edgev2/internal/testenv"
	keysapi "github.com/edgev2/edgev2/keys/api"
)

// grantsConfig gives each service keys of its own: certd issues
// edge-server (self-signed) and the CA behind tls-leaf; identityd signs the
// device's SAS tokens with device-id and derives module keys from
// identityd-master.
const grantsConfig = `
hostname = "edge-gw-1"

[provisioning]
source = "manual"
iothub_hostname = "hub.example.net"
device_id = "edge-gw-1"

[provisioning.authentication]
method = "sas"
device_id_pk = { value = "c2VjcmV0LWRldmljZS1rZXktYnl0ZXMtMDEyMzQ1Njc=" }

[cert_issuance.certs.edge-server]
method = "self_signed"
common_name = "edge-gw-1"
`

// keysWorld is keyd (file engine) with polkitd on a private bus, the
// services' rules compiled from grantsConfig installed, and one key of each
// service made by root.
type keysWorld struct {
	bus *testenv.Bus
}

func startKeysWithCompiledGrants(t *testing.T) *keysWorld {
	t.Helper()
	c, err := superconfig.Parse("/etc/edgev2/config.toml", []byte(grantsConfig))
	if err != nil {
		t.Fatal(err)
	}
	out, err := superconfig.Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	var rules []byte
	for _, f := range out.Files {
		if f.Path == superconfig.ServicesRulesPath {
			rules = f.Data
		}
	}
	if rules == nil {
		t.Fatalf("config apply wrote no %s", superconfig.ServicesRulesPath)
	}
	d := testenv.StartDevice(t, testenv.DeviceOptions{Keyd: &testenv.Daemon{}, Rules: map[string]string{"compiled-services": string(rules)}})

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kc := d.Keys()
	if _, err := kc.CreateKey(ctx, "device-id", "sign", []byte("secret-device-key-bytes-01234567")); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.CreateKey(ctx, "identityd-master", "derive", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.CreateKeyPair(ctx, "edge-server", "ec-p256"); err != nil {
		t.Fatal(err)
	}
	return &keysWorld{bus: d.Bus}
}

// call runs a Keys method with busctl as user and returns its output and
// exit code.
func (w *keysWorld) call(t *testing.T, user, id, method, signature string, args ...string) (string, int) {
	t.Helper()
	path, iface := string(keysapi.ObjectPath), keysapi.Interface
	if id != "" {
		path += "/" + keysapi.Collection + "/" + bus.EscapePathElement(id)
		iface = keysapi.KeyInterface
	}
	argv := append([]string{"call", keysapi.BusName, path, iface, method, signature}, args...)
	out, errOut, code := w.bus.Busctl(t, user, argv...)
	return out + errOut, code
}

// allowed fails unless the call succeeded.
func allowed(t *testing.T, what, out string, code int) {
	t.Helper()
	if code != 0 {
		t.Errorf("%s: exit %d: %s; want it granted", what, code, strings.TrimSpace(out))
	}
}

// refused fails unless the call failed with NotAuthorized naming action.
func refused(t *testing.T, what, action, out string, code int) {
	t.Helper()
	if code == 0 || !strings.Contains(out, "not authorized for "+action) {
		t.Errorf("%s: exit %d: %s; want NotAuthorized for %s", what, code, strings.TrimSpace(out), action)
	}
}

var data = []string{"3", "1", "2", "3", "0"} // ay [1 2 3], a{sv} {}

// TestCertdGrantCoversItsCertificatesKeysAndNotTheIdentityKeys acts as
// edgecerts (a compromised certd) against the real keyd and polkitd with
// the rules `config apply` compiles: certd uses, makes and rotates the key
// of the certificate it issues, and is refused signing with the device's
// SAS key (forging device tokens) and deleting the module-key master.
func TestCertdGrantCoversItsCertificatesKeysAndNotTheIdentityKeys(t *testing.T) {
	w := startKeysWithCompiledGrants(t)
	u := testenv.CertsUser

	out, code := w.call(t, u, "edge-server", "Sign", "saya{sv}", append([]string{"ecdsa-sha256"}, data...)...)
	allowed(t, "certd signs with edge-server", out, code)
	out, code = w.call(t, u, "", "CreateKeyPair", "ssa{sv}", "edge-server.next", "ec-p256", "0")
	allowed(t, "certd makes the rotation key edge-server.next", out, code)
	out, code = w.call(t, u, "", "MoveKey", "ss", "edge-server.next", "edge-server")
	allowed(t, "certd rotates edge-server", out, code)

	out, code = w.call(t, u, "device-id", "Sign", "saya{sv}", append([]string{"hmac-sha256"}, data...)...)
	refused(t, "certd signs with the device SAS key", "org.edgev2.keys.use", out, code)
	out, code = w.call(t, u, "identityd-master", "SignDerived", "aysay", "3", "1", "2", "3", "hmac-sha256", "3", "1", "2", "3")
	refused(t, "certd signs with a module key", "org.edgev2.keys.use", out, code)
	out, code = w.call(t, u, "", "DeleteKey", "s", "identityd-master")
	refused(t, "certd deletes the module-key master", "org.edgev2.keys.manage", out, code)
	out, code = w.call(t, u, "", "CreateKeyPair", "ssa{sv}", "rogue-ca", "ec-p256", "0")
	refused(t, "certd makes a key no certificate of its configuration has", "org.edgev2.keys.manage", out, code)
}

// TestIdentitydGrantCoversTheIdentityKeysAndNotCertdsKeys acts as edgeid:
// identityd signs with the device key and derives and exports module keys
// from its master, and is refused signing with or deleting the key of a
// certificate certd issues.
func TestIdentitydGrantCoversTheIdentityKeysAndNotCertdsKeys(t *testing.T) {
	w := startKeysWithCompiledGrants(t)
	u := testenv.IdentityUser

	out, code := w.call(t, u, "device-id", "Sign", "saya{sv}", append([]string{"hmac-sha256"}, data...)...)
	allowed(t, "identityd signs a device SAS token", out, code)
	out, code = w.call(t, u, "identityd-master", "SignDerived", "aysay", "3", "1", "2", "3", "hmac-sha256", "3", "1", "2", "3")
	allowed(t, "identityd signs a module SAS token", out, code)
	out, code = w.call(t, u, "identityd-master", "ExportDerived", "ay", "3", "1", "2", "3")
	allowed(t, "identityd exports a module key", out, code)

	out, code = w.call(t, u, "edge-server", "Sign", "saya{sv}", append([]string{"ecdsa-sha256"}, data...)...)
	refused(t, "identityd signs with certd's edge-server key", "org.edgev2.keys.use", out, code)
	out, code = w.call(t, u, "", "DeleteKey", "s", "edge-server")
	refused(t, "identityd deletes certd's edge-server key", "org.edgev2.keys.manage", out, code)
	out, code = w.call(t, u, "edge-server", "ExportDerived", "ay", "3", "1", "2", "3")
	refused(t, "identityd exports from certd's key", "org.edgev2.keys.export", out, code)
}
