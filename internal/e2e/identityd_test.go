package e2e_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	certsapi "github.com/edgev2/edgev2/certs/api"
	cclient "github.com/edgev2/edgev2/certs/client"
	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/fault"
	idapi "github.com/edgev2/edgev2/identity/api"
	iclient "github.com/edgev2/edgev2/identity/client"
	"github.com/edgev2/edgev2/internal/labcloud"
	"github.com/edgev2/edgev2/internal/labcloud/dps"
	labest "github.com/edgev2/edgev2/internal/labcloud/est"
	"github.com/edgev2/edgev2/internal/labcloud/hub"
	"github.com/edgev2/edgev2/internal/labcloud/labhost"
	"github.com/edgev2/edgev2/internal/testenv"
	kclient "github.com/edgev2/edgev2/keys/client"
)

// world is the device (bus, polkit, keyd, certd, identityd) and the cloud
// (labcloud's DPS, IoT Hub and EST CA, in-process so tests can look inside
// and stop it).
type world struct {
	dev       *testenv.Device
	t         *testing.T // the top-level test: services live as long as it
	dir       string     // the device's: identityd-<name>.toml and its home
	bus       *testenv.Bus
	polkit    *testenv.Polkit
	conn      *godbus.Conn
	keys      *kclient.Client
	certs     *cclient.Client
	id        *iclient.Client
	identityd *testenv.Service
	keyd      *testenv.Service

	cloudState string
	hubHost    string // the cloud's bare name (DPS, hub, EST), on 443 as in Azure
	cloudAddr  string // its own loopback 127.77.x.y:443 (labhost)
	caPEM      []byte
	cloudCfg   labcloud.Config
	cloud      *labcloud.Services
	server     *httptest.Server
}

const (
	sasKey1   = "bWFudWFsLWRldmljZS1rZXktMDEyMzQ1Njc4OWFiY2RlZg==" // 32+ bytes, base64
	dpsKey    = "ZHBzLWluZGl2aWR1YWwta2V5LTAxMjM0NTY3ODlhYmNkZWY="
	groupKey  = "ZHBzLWdyb3VwLWtleS0wMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1"
	estUser   = "factory"
	estSecret = "factory-password"
)

// certdConfig is certd's config in the world: EST at the cloud, the
// identity certificates identityd names, modrtd's quickstart edge CA.
var certdConfig = fmt.Sprintf(`
[preloaded_certs]
labcloud-ca = "file://$CLOUD_CA"
[est]
url = "https://$CLOUD_HOST/.well-known/est"
trusted_certs = ["labcloud-ca"]
username = %q
password = %q
[cert_issuance.dps-id]
method = "est"
common_name = "x509-dev-1"
[cert_issuance.manual-x509]
method = "self_signed"
common_name = "manual-x509"
[cert_issuance.edge-ca]
method = "self_signed"
ca = true
common_name = "edgev2 test edge CA"
# modrtd's quickstart edge CA, as the super-config binds it.
[local_ca.edgev2-edge-ca]
key = "edgev2-edge-ca"
`, estUser, estSecret)

func newWorld(t *testing.T) *world { return newWorldKeyd(t, nil) }

// keydSoftHSM puts keyd's keys in a SoftHSM token.
func keydSoftHSM(t *testing.T, uid, gid int) (string, []string) {
	tok := testenv.NewSoftHSMToken(t, "edgev2-identity", uid, gid)
	return fmt.Sprintf("pkcs11_lib_path = %q\npkcs11_base_slot = %q\n", tok.LibPath, tok.URI()), tok.Env()
}

// newWorldKeyd is newWorld, with keyd's engine from keydSetup (nil: the
// file engine): keyd.toml lines and environment.
func newWorldKeyd(t *testing.T, keydSetup func(t *testing.T, uid, gid int) (string, []string)) *world {
	t.Helper()
	testenv.RequireRoot(t)
	w := &world{t: t, dir: testenv.SharedTempDir(t, "identity")}

	// The cloud first: certd needs its URL and CA.
	w.cloudState = filepath.Join(w.dir, "cloud")
	// Make the EST CA now, so DPS's X.509 group enrollment can name it.
	if _, err := labest.NewServer(labest.Config{}, filepath.Join(w.cloudState, "est"), nil); err != nil {
		t.Fatal(err)
	}
	w.cloudCfg = labcloud.Config{
		EST: labest.Config{Users: []labest.User{{Name: estUser, Password: estSecret}}},
		DPS: dps.Config{IDScope: "0ne00000042", AssigningPolls: 2, ThrottleFirst: 1, RetryAfter: 1,
			Enrollments: []dps.Enrollment{
				{RegistrationID: "reg-sym", Attestation: "symmetric_key", PrimaryKey: dpsKey},
				{GroupID: "grp-sym", Attestation: "symmetric_key", PrimaryKey: groupKey},
				{GroupID: "grp-x509", Attestation: "x509", CertificateFile: filepath.Join(w.cloudState, "est", "ca-cert.pem")},
				// DPS-issued operational certificates (operational_test.go).
				{RegistrationID: "reg-op", Attestation: "symmetric_key", PrimaryKey: dpsKey,
					CredentialPolicy: &dps.CredentialPolicy{Issuer: "est", Validity: "1m", KeyTypes: []string{"ec-p256"}}},
			}},
		Hub: hub.Config{Devices: []hub.DeviceConfig{{DeviceID: "manual-sas", PrimaryKey: sasKey1}}},
	}
	host := labhost.Reserve(t)
	w.hubHost, w.cloudAddr = host.Name, host.Addr()
	w.startCloud(t)

	keyd := &testenv.Daemon{Args: []string{}}
	if keydSetup != nil {
		kuid, kgid := testenv.EnsureUser(t, testenv.ServiceUser)
		keyd.Config, keyd.Env = keydSetup(t, kuid, kgid)
	}
	w.dev = testenv.StartDevice(t, testenv.DeviceOptions{
		Cloud: &testenv.Cloud{Host: w.hubHost, CAPEM: w.caPEM},
		Keyd:  keyd, Certd: &testenv.Daemon{Config: certdConfig, Args: []string{}},
	})
	w.dir, w.bus, w.polkit, w.conn = w.dev.Dir, w.dev.Bus, w.dev.Polkit, w.dev.Conn()
	w.keyd = w.dev.Daemon(testenv.Keyd)
	w.keys, w.certs, w.id = w.dev.Keys(), w.dev.Certs(), w.dev.Identity()
	return w
}

// startCloud (re)starts the cloud on the same address and state.
func (w *world) startCloud(t *testing.T) {
	t.Helper()
	svc, err := labcloud.Open(w.cloudCfg, w.cloudState, w.hubHost, nil)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := svc.TLSConfig(svc.ServerNames()...)
	if err != nil {
		t.Fatal(err)
	}
	var l net.Listener
	testenv.WaitFor(5*time.Second, func() bool { l, err = net.Listen("tcp", w.cloudAddr); return err == nil })
	if err != nil {
		t.Fatalf("listen on %s again: %v", w.cloudAddr, err)
	}
	w.server = svc.StartTLS(l, tlsCfg)
	w.cloud, w.caPEM = svc, svc.EST.CAPEM()
	w.t.Cleanup(w.stopCloud)
}

func (w *world) stopCloud() {
	if w.server != nil {
		w.server.CloseClientConnections()
		w.server.Close()
		w.server = nil
	}
}

// front serves h on 127.0.0.1 with the cloud's TLS certificate, in front
// of the cloud (a proxy that misbehaves), until the test ends; it returns
// its URL.
func (w *world) front(t *testing.T, h http.Handler) string {
	t.Helper()
	front := httptest.NewUnstartedServer(h)
	tlsCfg, err := w.cloud.TLSConfig("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	front.TLS = tlsCfg
	front.StartTLS()
	t.Cleanup(front.Close)
	return front.URL
}

// startIdentityd (re)starts identityd with the given [provisioning] text,
// in a home of its own for each name.
func (w *world) startIdentityd(t *testing.T, name, provisioning string) {
	t.Helper()
	w.identityd = w.dev.StartDaemon(t, testenv.Identityd, testenv.Daemon{Home: "identityd-" + name,
		Config: "hostname = \"edge-1\"\n[cloud]\ntrusted_certs = [\"labcloud-ca\"]\nretry_max_s = 2\ntimeout_s = 5\n" + provisioning})
}

// waitState waits for the State property.
func (w *world) waitState(t *testing.T, want string, timeout time.Duration) {
	t.Helper()
	ctx := context.Background()
	var got string
	if testenv.WaitFor(timeout, func() bool { got, _ = w.id.State(ctx); return got == want }) {
		return
	}
	info, _ := w.id.ProvisioningInfo(ctx)
	t.Fatalf("identityd state %q after %v, want %q (last error %q)", got, timeout, want, info.LastError)
}

// sendAs posts a device-to-cloud message with a SAS token, as a device or
// module SDK would, and returns the HTTP status.
func (w *world) sendAs(t *testing.T, device, module, token string) int {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(w.caPEM)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	path := "/devices/" + url.PathEscape(device)
	if module != "" {
		path += "/modules/" + url.PathEscape(module)
	}
	req, _ := http.NewRequest(http.MethodPost, "https://"+w.hubHost+path+"/messages/events?api-version=2020-03-13", strings.NewReader(`{"hello":"edge"}`))
	req.Header.Set("Authorization", token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("send as %s/%s: %v", device, module, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func importKey(t *testing.T, w *world, id, usage, b64 string) {
	t.Helper()
	raw, _ := base64.StdEncoding.DecodeString(b64)
	if _, err := w.keys.CreateKey(context.Background(), id, usage, raw); err != nil {
		t.Fatal(err)
	}
}

// checkTokens proves the identity works end to end: the device's own token
// (sas devices) and a new module's token are accepted by the hub.
func checkTokens(t *testing.T, w *world, wantDevice string, deviceSAS bool) {
	t.Helper()
	ctx := context.Background()
	dev, err := w.id.DeviceIdentity(ctx)
	if err != nil || dev.DeviceID != wantDevice || dev.HubHostname != w.hubHost {
		t.Fatalf("device identity %v, %v; want %s on %s", dev, err, wantDevice, w.hubHost)
	}
	tok, err := w.id.SasToken(ctx, "", 600)
	if deviceSAS {
		if err != nil {
			t.Fatal(err)
		}
		if code := w.sendAs(t, wantDevice, "", tok); code != http.StatusNoContent {
			t.Fatalf("the hub answered %d to the device's own SAS token", code)
		}
	} else if !fault.Is(err, fault.InvalidArgs) {
		t.Fatalf("device SAS token for an X.509 device: %v, want InvalidArgs", err)
	}
	mod := "telemetry-" + wantDevice
	m, err := w.id.CreateModule(ctx, mod, "edgeAgent")
	if err != nil {
		t.Fatalf("CreateModuleIdentity: %v", err)
	}
	if m.GenerationID == "" {
		t.Fatal("no generation id")
	}
	hm, ok := w.cloud.Hub.Module(wantDevice, mod)
	if !ok || hm.Authentication.Type != "sas" {
		t.Fatalf("the module is not registered with SAS keys in the hub: %+v", hm)
	}
	mtok, err := w.id.SasToken(ctx, mod, 600)
	if err != nil {
		t.Fatal(err)
	}
	if code := w.sendAs(t, wantDevice, mod, mtok); code != http.StatusNoContent {
		t.Fatalf("the hub answered %d to the module's SAS token", code)
	}
	if n := w.cloud.Hub.AcceptedMessages(wantDevice, mod); n != 1 {
		t.Fatalf("hub accepted %d messages from the module, want 1", n)
	}
	bad := strings.Replace(mtok, "se=", "se=1", 1)
	if code := w.sendAs(t, wantDevice, mod, bad); code != http.StatusUnauthorized {
		t.Fatalf("a tampered module token got %d, want 401", code)
	}
}

func TestIdentitydProvisionsEveryWayEndToEnd(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()

	t.Run("ManualConnectionString", func(t *testing.T) {
		w.startIdentityd(t, "manual-cs", fmt.Sprintf("[provisioning]\nsource = \"manual\"\nconnection_string = \"HostName=%s;DeviceId=manual-sas;SharedAccessKey=%s\"\n", w.hubHost, sasKey1))
		w.waitState(t, "provisioned", 20*time.Second)
		checkTokens(t, w, "manual-sas", true)
		if strings.Contains(w.identityd.Output(), sasKey1) {
			t.Fatal("identityd logged the connection string's key")
		}
	})
	t.Run("ManualX509", func(t *testing.T) {
		pemText, err := w.certs.Ensure(ctx, "manual-x509")
		if err != nil {
			t.Fatal(err)
		}
		chain, _ := certsapi.ParseChainPEM(pemText)
		sum := sha256.Sum256(chain[0].Raw)
		thumb := strings.ToUpper(hex.EncodeToString(sum[:]))
		if _, err := w.cloud.Hub.AddDevice(hub.DeviceConfig{DeviceID: "manual-x509", PrimaryThumbprint: thumb, SecondaryThumbprint: thumb}); err != nil {
			t.Fatal(err)
		}
		w.startIdentityd(t, "manual-x509", fmt.Sprintf("[provisioning]\nsource = \"manual\"\niothub_hostname = %q\ndevice_id = \"manual-x509\"\n[provisioning.authentication]\nmethod = \"x509\"\ndevice_id_cert = \"manual-x509\"\ndevice_id_pk = \"manual-x509\"\n", w.hubHost))
		w.waitState(t, "provisioned", 20*time.Second)
		checkTokens(t, w, "manual-x509", false)
	})
	t.Run("DPSSymmetricIndividual", func(t *testing.T) {
		importKey(t, w, "dps-key", "sign", dpsKey)
		w.startIdentityd(t, "dps-sym", fmt.Sprintf("[provisioning]\nsource = \"dps\"\nglobal_endpoint = \"https://%s\"\nid_scope = \"0ne00000042\"\n[provisioning.attestation]\nmethod = \"symmetric_key\"\nregistration_id = \"reg-sym\"\nsymmetric_key = \"dps-key\"\n", w.hubHost))
		w.waitState(t, "provisioned", 30*time.Second)
		checkTokens(t, w, "reg-sym", true)
		info, _ := w.id.ProvisioningInfo(ctx)
		if info.Substatus != "initialAssignment" || info.RegistrationID != "reg-sym" {
			t.Fatalf("provisioning info %v", info)
		}
	})
	t.Run("DPSSymmetricGroup", func(t *testing.T) {
		importKey(t, w, "dps-group", "derive", groupKey)
		w.startIdentityd(t, "dps-group", fmt.Sprintf("[provisioning]\nsource = \"dps\"\nglobal_endpoint = \"https://%s\"\nid_scope = \"0ne00000042\"\n[provisioning.attestation]\nmethod = \"symmetric_key\"\nregistration_id = \"grp-dev-1\"\ngroup_key = \"dps-group\"\n", w.hubHost))
		w.waitState(t, "provisioned", 30*time.Second)
		checkTokens(t, w, "grp-dev-1", true)
	})
	t.Run("DPSX509WithESTIssuedCertificate", func(t *testing.T) {
		w.startIdentityd(t, "dps-x509", fmt.Sprintf("[provisioning]\nsource = \"dps\"\nglobal_endpoint = \"https://%s\"\nid_scope = \"0ne00000042\"\n[provisioning.attestation]\nmethod = \"x509\"\nidentity_cert = \"dps-id\"\nidentity_pk = \"dps-id\"\n", w.hubHost))
		w.waitState(t, "provisioned", 30*time.Second)
		checkTokens(t, w, "x509-dev-1", false)
		if n := len(w.cloud.EST.Issued()); n == 0 {
			t.Fatal("the identity certificate was not issued over EST")
		}
		// certd renews the identity certificate: identityd registers again
		// with it, and the hub accepts the device's new certificate.
		if err := w.certs.Renew(ctx, "dps-id"); err != nil {
			t.Fatal(err)
		}
		info, _ := w.id.ProvisioningInfo(ctx)
		if !testenv.WaitFor(30*time.Second, func() bool {
			info, _ = w.id.ProvisioningInfo(ctx)
			return info.Substatus == "reprovisionedToInitialAssignment"
		}) {
			t.Fatalf("no re-registration after the identity certificate was renewed: %v", info)
		}
		w.waitState(t, "provisioned", 30*time.Second)
		if _, err := w.id.CreateModule(ctx, "after-renewal", ""); err != nil {
			t.Fatalf("module CRUD with the renewed certificate: %v", err)
		}
		if err := w.id.DeleteModule(ctx, "after-renewal"); err != nil {
			t.Fatal(err)
		}
		if _, err := w.id.SasToken(ctx, "telemetry-x509-dev-1", 0); !fault.Is(err, fault.InvalidArgs) {
			t.Fatalf("ttl 0: %v, want InvalidArgs", err)
		}
	})
	t.Run("OfflineBootServesTheCachedIdentity", func(t *testing.T) {
		mods, err := w.id.Modules(ctx)
		if err != nil || len(mods) != 1 {
			t.Fatalf("modules before going offline: %v, %v", mods, err)
		}
		w.stopCloud()
		w.identityd.Restart(t)
		w.waitState(t, "provisioned", 10*time.Second)
		dev, err := w.id.DeviceIdentity(ctx)
		if err != nil || dev.DeviceID != "x509-dev-1" {
			t.Fatalf("offline device identity %v, %v", dev, err)
		}
		info, _ := w.id.ProvisioningInfo(ctx)
		if !info.FromCache {
			t.Fatal("identity not served from cache")
		}
		mods, err = w.id.Modules(ctx)
		if err != nil || len(mods) != 1 || mods[0].ModuleID != "telemetry-x509-dev-1" {
			t.Fatalf("offline module list %v, %v", mods, err)
		}
		if _, err := w.id.SasToken(ctx, "telemetry-x509-dev-1", 60); err != nil {
			t.Fatalf("offline module token: %v", err)
		}
		w.startCloud(t)
	})
	t.Run("ModuleIdentityCRUDSurvivesRestarts", func(t *testing.T) {
		if _, err := w.id.CreateModule(ctx, "crud-mod", ""); err != nil {
			t.Fatal(err)
		}
		w.identityd.Restart(t)
		w.waitState(t, "provisioned", 10*time.Second)
		m, err := w.id.Module(ctx, "crud-mod")
		if err != nil || m.ModuleID != "crud-mod" {
			t.Fatalf("module after restart: %v, %v", m, err)
		}
		if _, err := w.id.UpdateModule(ctx, "crud-mod", "edgeAgent"); err != nil {
			t.Fatalf("UpdateModuleIdentity: %v", err)
		}
		if hm, _ := w.cloud.Hub.Module("x509-dev-1", "crud-mod"); hm.ManagedBy != "edgeAgent" {
			t.Fatalf("managed_by not updated in the hub: %+v", hm)
		}
		if err := w.id.DeleteModule(ctx, "crud-mod"); err != nil {
			t.Fatal(err)
		}
		if _, ok := w.cloud.Hub.Module("x509-dev-1", "crud-mod"); ok {
			t.Fatal("module still in the hub after DeleteModuleIdentity")
		}
		if _, err := w.id.Module(ctx, "crud-mod"); !fault.Is(err, fault.NotFound) {
			t.Fatalf("GetModuleIdentity after delete: %v, want NotFound", err)
		}
		if _, err := w.id.CreateModule(ctx, "bad/id", ""); !fault.Is(err, fault.InvalidArgs) {
			t.Fatalf("bad module id: %v, want InvalidArgs", err)
		}
	})
	t.Run("SecondUIDReadsButCannotGetTokens", func(t *testing.T) {
		gdbus := func(method string, args ...string) (string, int) {
			argv := append([]string{"call", "--address", w.bus.Address, "--dest", idapi.BusName,
				"--object-path", string(idapi.ObjectPath), "--method", idapi.Interface + "." + method}, args...)
			out, errOut, code := testenv.RunAs(t, testenv.OtherUser, nil, "gdbus", argv...)
			return out + errOut, code
		}
		if out, code := gdbus("GetDeviceIdentity"); code != 0 || !strings.Contains(out, "x509-dev-1") {
			t.Fatalf("GetDeviceIdentity as %s: %d %s", testenv.OtherUser, code, out)
		}
		for _, m := range [][]string{{"GetSasToken", "telemetry-x509-dev-1", "60"}, {"Reprovision"}, {"DeleteModuleIdentity", "telemetry-x509-dev-1"}} {
			if out, code := gdbus(m[0], m[1:]...); code == 0 || !strings.Contains(out, bus.ErrNotAuthorized) {
				t.Fatalf("%s as %s: %d %s; want NotAuthorized", m[0], testenv.OtherUser, code, out)
			}
		}
		w.polkit.AddRule(t, "module-token", testenv.GrantRule("org.edgev2.identity.manage", testenv.OtherUser, "module_id", "telemetry-x509-dev-1"))
		if out, code := gdbus("GetSasToken", "telemetry-x509-dev-1", "60"); code != 0 || !strings.Contains(out, "SharedAccessSignature") {
			t.Fatalf("GetSasToken for the granted module: %d %s", code, out)
		}
	})
	t.Run("ChangedConfigProvisionsAgain", func(t *testing.T) {
		// The same homedir as DPSSymmetricIndividual, but another enrollment.
		w.startIdentityd(t, "dps-sym", fmt.Sprintf("[provisioning]\nsource = \"dps\"\nglobal_endpoint = \"https://%s\"\nid_scope = \"0ne00000042\"\n[provisioning.attestation]\nmethod = \"symmetric_key\"\nregistration_id = \"grp-dev-2\"\ngroup_key = \"dps-group\"\n", w.hubHost))
		w.waitState(t, "provisioned", 30*time.Second)
		dev, _ := w.id.DeviceIdentity(ctx)
		if dev.DeviceID != "grp-dev-2" {
			t.Fatalf("served %q from a stale cache; want grp-dev-2", dev.DeviceID)
		}
		if err := w.id.Reprovision(ctx); err != nil {
			t.Fatalf("Reprovision: %v", err)
		}
		info, _ := w.id.ProvisioningInfo(ctx)
		if info.Substatus != "reprovisionedToInitialAssignment" {
			t.Fatalf("substatus after Reprovision = %q", info.Substatus)
		}
	})
}

// flakyDPS sits in front of DPS and misbehaves on demand.
type flakyDPS struct {
	mode  atomic.Value // "garbage", "drop", "html", "proxy"
	proxy *httputil.ReverseProxy
}

func (f *flakyDPS) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	switch f.mode.Load().(string) {
	case "garbage":
		rw.Header().Set("Content-Type", "application/json")
		rw.WriteHeader(http.StatusAccepted)
		rw.Write([]byte(`{"operationId": 17, "status": [}`))
	case "html":
		rw.Header().Set("Content-Type", "text/html")
		rw.WriteHeader(http.StatusBadGateway)
		rw.Write([]byte("<html><body>502 Bad Gateway</body></html>"))
	case "drop":
		if hj, ok := rw.(http.Hijacker); ok {
			c, _, _ := hj.Hijack()
			c.Close()
		}
	default:
		f.proxy.ServeHTTP(rw, r)
	}
}

func TestIdentitydFailsClearlyOnABrokenDPSAndRecovers(t *testing.T) {
	w := newWorld(t)
	importKey(t, w, "dps-key", "sign", dpsKey)
	target, _ := url.Parse("https://" + w.hubHost)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(w.caPEM)
	f := &flakyDPS{proxy: httputil.NewSingleHostReverseProxy(target)}
	f.proxy.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	f.mode.Store("garbage")
	w.startIdentityd(t, "flaky", fmt.Sprintf("[provisioning]\nsource = \"dps\"\nglobal_endpoint = %q\nid_scope = \"0ne00000042\"\n[provisioning.attestation]\nmethod = \"symmetric_key\"\nregistration_id = \"reg-sym\"\nsymmetric_key = \"dps-key\"\n", w.front(t, f)))
	ctx := context.Background()
	prev := ""
	for _, mode := range []string{"garbage", "html", "drop"} {
		f.mode.Store(mode)
		var last string
		testenv.WaitFor(20*time.Second, func() bool {
			st, _ := w.id.State(ctx)
			info, _ := w.id.ProvisioningInfo(ctx)
			last = info.LastError
			return st == "failed" && last != "" && last != prev
		})
		if last == prev || !strings.Contains(strings.ToLower(last), "dps") {
			t.Fatalf("DPS answering %s: last error %q does not name DPS or did not change from %q", mode, last, prev)
		}
		t.Logf("DPS %s → failed: %s", mode, last)
		prev = last
	}
	f.mode.Store("proxy")
	w.waitState(t, "provisioned", 30*time.Second)
	if !w.identityd.IsRunning() {
		t.Fatal("identityd exited while DPS misbehaved")
	}
}

// TestIdentitydNeverRepeatsAnEchoedSASSignature: a DPS (or a proxy in
// front of it) that refuses the registration quoting back the SAS token's
// signature, decoded: identityd fails saying what DPS said, and the
// signature is neither in LastError (any identity.read caller's, edgectl
// identity show's) nor in identityd's log.
func TestIdentitydNeverRepeatsAnEchoedSASSignature(t *testing.T) {
	w := newWorld(t)
	importKey(t, w, "dps-key", "sign", dpsKey)
	var mu sync.Mutex
	var sigs []string
	echo := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		i, j := strings.Index(auth, "sig="), strings.Index(auth, "&se=")
		if i < 0 || j < i {
			rw.WriteHeader(http.StatusBadRequest)
			return
		}
		sig, _ := url.QueryUnescape(auth[i+4 : j])
		mu.Lock()
		sigs = append(sigs, sig, auth[i+4:j])
		mu.Unlock()
		rw.Header().Set("Content-Type", "application/json")
		rw.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(rw, `{"errorCode":401002,"trackingId":"t-1","message":"signature %s is wrong"}`, sig)
	})
	w.startIdentityd(t, "echo", fmt.Sprintf("[provisioning]\nsource = \"dps\"\nglobal_endpoint = %q\nid_scope = \"0ne00000042\"\n[provisioning.attestation]\nmethod = \"symmetric_key\"\nregistration_id = \"reg-sym\"\nsymmetric_key = \"dps-key\"\n", w.front(t, echo)))
	last := w.waitFailed(t, 30*time.Second, "DPS", "is wrong")
	out := w.identityd.Output()
	mu.Lock()
	defer mu.Unlock()
	if len(sigs) == 0 {
		t.Fatal("identityd sent DPS no SAS token")
	}
	for _, sig := range sigs {
		if strings.Contains(last, sig) || strings.Contains(out, sig) {
			t.Fatalf("the SAS signature %s DPS quoted back is repeated:\nlast error: %s\nidentityd log:\n%s", sig, last, out)
		}
	}
}

// TestIdentitydSourceNoneServesCallerIdentity: the served interface is
// checked against the shipped XML when identityd exports it (bus.CheckMethods).
func TestIdentitydSourceNoneServesCallerIdentity(t *testing.T) {
	w := newWorld(t)
	ouid, _ := testenv.EnsureUser(t, testenv.OtherUser)
	w.startIdentityd(t, "introspect", fmt.Sprintf("[provisioning]\nsource = \"none\"\n[[principal]]\nname = \"local-agent\"\nuid = %d\nid_type = \"local\"\n", ouid))
	if st, _ := w.id.State(context.Background()); st != "unprovisioned" {
		t.Fatalf("source none: state %q", st)
	}
	out, errOut, code := testenv.RunAs(t, testenv.OtherUser, nil, "gdbus", "call", "--address", w.bus.Address, "--dest", idapi.BusName,
		"--object-path", string(idapi.ObjectPath), "--method", idapi.Interface+".GetCallerIdentity")
	if code != 0 || !strings.Contains(out, "local-agent") {
		t.Fatalf("GetCallerIdentity as %s: %d %s%s", testenv.OtherUser, code, out, errOut)
	}
	var d map[string]godbus.Variant
	err := w.conn.Object(idapi.BusName, idapi.ObjectPath).Call(idapi.Interface+".GetCallerIdentity", 0).Store(&d)
	if !fault.Is(bus.FromError(err), fault.NotFound) {
		t.Fatalf("GetCallerIdentity as root (no principal): %v, want NotFound", err)
	}
}

var _ = pkix.Name{}
