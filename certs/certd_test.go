package certs_test

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/edgev2/edgev2/certs"
	certsapi "github.com/edgev2/edgev2/certs/api"
	cclient "github.com/edgev2/edgev2/certs/client"
	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/testenv"
	kclient "github.com/edgev2/edgev2/keys/client"
)

// stack is keyd and certd on a private bus with polkitd.
type stack struct {
	bus    *testenv.Bus
	polkit *testenv.Polkit
	keyd   *testenv.Service
	certd  *testenv.Service
	conn   *godbus.Conn
	keys   *kclient.Client
	certs  *cclient.Client
}

// startStack starts keyd (file engine) and certd with extra appended to
// certd's config; certd's grant in Keys is compiled from that config as
// `edgectl config apply` does: the keys it issues and signs with only.
func startStack(t *testing.T, extra string) *stack {
	t.Helper()
	return startStackWith(t, nil, extra)
}

// startESTStack is startStack with the EST server at url, its CA caPEM
// preloaded as est-ca and trusted; est is the rest of the [est] table and
// what follows it.
func startESTStack(t *testing.T, url string, caPEM []byte, est string) *stack {
	t.Helper()
	return startStackWith(t, &testenv.Cloud{Host: strings.TrimPrefix(url, "https://"), CAPEM: caPEM}, `
[preloaded_certs]
est-ca = "file://$CLOUD_CA"
[est]
url = "$CLOUD_URL/.well-known/est"
trusted_certs = ["est-ca"]
`+est)
}

func startStackWith(t *testing.T, cloud *testenv.Cloud, extra string) *stack {
	t.Helper()
	d := testenv.StartDevice(t, testenv.DeviceOptions{Cloud: cloud, Keyd: &testenv.Daemon{Args: []string{}}, Certd: &testenv.Daemon{Config: extra}})
	return &stack{bus: d.Bus, polkit: d.Polkit, keyd: d.Daemon(testenv.Keyd), certd: d.Daemon(testenv.Certd),
		conn: d.Conn(), keys: d.Keys(), certs: d.Certs()}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func parseChain(t *testing.T, pemText string) []*x509.Certificate {
	t.Helper()
	chain, err := certsapi.ParseChainPEM(pemText)
	if err != nil {
		t.Fatalf("parse returned chain: %v", err)
	}
	return chain
}

func opensslVerify(t *testing.T, chainPEM string, rootPEM string) {
	t.Helper()
	dir := t.TempDir()
	chain := parseChain(t, chainPEM)
	os.WriteFile(filepath.Join(dir, "root.pem"), []byte(rootPEM), 0o600)
	os.WriteFile(filepath.Join(dir, "leaf.pem"), []byte(certsapi.EncodeChain(chain[:1])), 0o600)
	args := []string{"verify", "-CAfile", filepath.Join(dir, "root.pem")}
	if len(chain) > 1 { // intermediates (and the root, if stored) are untrusted input
		os.WriteFile(filepath.Join(dir, "inter.pem"), []byte(certsapi.EncodeChain(chain[1:])), 0o600)
		args = append(args, "-untrusted", filepath.Join(dir, "inter.pem"))
	}
	args = append(args, filepath.Join(dir, "leaf.pem"))
	if out, err := exec.Command("openssl", args...).CombinedOutput(); err != nil || !strings.Contains(string(out), ": OK") {
		t.Fatalf("openssl verify: %v\n%s", err, out)
	}
}

const localCAPolicy = `
[cert_issuance.local-ca]
method = "self_signed"
ca = true
common_name = "edgev2 device CA"
expiry_days = 365

[cert_issuance.device-id]
method = "local_ca"
issuer_cert = "local-ca"
issuer_key = "local-ca"
common_name = "device-1"
dns_names = ["device-1.local"]
expiry_days = 30

[cert_issuance.short]
method = "local_ca"
issuer_cert = "local-ca"
issuer_key = "local-ca"
expiry = "8s"
[cert_issuance.short.auto_renew]
threshold = "50%"
rotate_key = true
`

func TestCertdIssuesThroughTheBus(t *testing.T) {
	s := startStack(t, localCAPolicy)
	ctx := ctxT(t)
	parent := t

	t.Run("SelfSignedForACallersCSR", func(t *testing.T) {
		key, err := s.keys.CreateKeyPair(ctx, "callers-key", "ec-p256")
		if err != nil {
			t.Fatal(err)
		}
		signer, _ := key.Signer(ctx)
		csr, _ := certs.NewCSR(signer, pkix.Name{CommonName: "caller"}, nil)
		// certd's compiled grant covers the keys its configuration names,
		// not a caller's: Keys refuses certd the caller's key.
		_, err = s.certs.Create(ctx, "callers-cert", csr, cclient.CreateOptions{Issuer: "self_signed", KeyID: "callers-key", Validity: time.Hour})
		if !fault.Is(err, fault.NotAuthorized) || !strings.Contains(err.Error(), "org.edgev2.keys") {
			t.Fatalf("self_signed with a key certd does not own: %v; want NotAuthorized naming the keys action", err)
		}
		// An operator who wants certd to self-sign that key grants it.
		s.polkit.AddRule(parent, "certd-callers-key", fmt.Sprintf(`polkit.addRule(function(action, subject) {
  if (subject.user == %q && (action.id == "org.edgev2.keys.use" || action.id == "org.edgev2.keys.read") && action.lookup("key_id") == "callers-key")
    return polkit.Result.YES;
});`, testenv.CertsUser))
		pemText, err := s.certs.Create(ctx, "callers-cert", csr, cclient.CreateOptions{Issuer: "self_signed", KeyID: "callers-key", Validity: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		opensslVerify(t, pemText, pemText)
		if got, _ := s.certs.Get(ctx, "callers-cert"); got != pemText {
			t.Fatal("GetCertificate differs from what CreateCertificate returned")
		}
	})
	t.Run("LocalCAByPolicy", func(t *testing.T) {
		caPEM, err := s.certs.Ensure(ctx, "local-ca")
		if err != nil {
			t.Fatal(err)
		}
		devPEM, err := s.certs.Ensure(ctx, "device-id")
		if err != nil {
			t.Fatal(err)
		}
		opensslVerify(t, devPEM, caPEM)
		chain := parseChain(t, devPEM)
		if len(chain) != 2 || chain[0].Subject.CommonName != "device-1" || chain[0].DNSNames[0] != "device-1.local" {
			t.Fatalf("device chain: %d certs, %v %v", len(chain), chain[0].Subject, chain[0].DNSNames)
		}
		// The key was made in keyd and matches.
		key, err := s.keys.GetKey(ctx, "device-id")
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := key.PublicKey(ctx)
		if !reflect.DeepEqual(pub, chain[0].PublicKey) {
			t.Fatal("the certificate's key is not the key in keyd")
		}
		again, _ := s.certs.Ensure(ctx, "device-id")
		if again != devPEM {
			t.Fatal("EnsureCertificate re-issued a valid certificate")
		}
		props, err := s.certs.Properties(ctx, "device-id")
		if err != nil || props.Subject != "CN=device-1" || props.Fingerprint == "" || props.NotAfter.Before(time.Now()) {
			t.Fatalf("properties %+v, %v", props, err)
		}
	})
	t.Run("RenewedOnScheduleWithRotation", func(t *testing.T) {
		watch := s.bus.Conn(t)
		watch.AddMatchSignal(godbus.WithMatchSender(certsapi.BusName), godbus.WithMatchMember("Renewed"))
		sigs := make(chan *godbus.Signal, 8)
		watch.Signal(sigs)
		typed := make(chan string, 8)
		if err := cclient.New(s.bus.Conn(t)).WatchRenewed(ctx, func(id string) {
			select {
			case typed <- id:
			default:
			}
		}); err != nil {
			t.Fatal(err)
		}
		firstPEM, err := s.certs.Ensure(ctx, "short")
		if err != nil {
			t.Fatal(err)
		}
		first := parseChain(t, firstPEM)[0]
		key, _ := s.keys.GetKey(ctx, "short")
		firstPub, _ := key.PublicKey(ctx)
		// The services send their signals unicast to every peer allowed to
		// read the object, whatever its match rules (root's watch here also
		// gets keyd's), so take only Renewed, as a listener must.
	renewed:
		for timeout := time.After(20 * time.Second); ; {
			select {
			case sig := <-sigs:
				if sig.Name != certsapi.CertInterface+".Renewed" {
					continue
				}
				if sig.Path != cclient.Path("short") {
					t.Fatalf("Renewed from %s", sig.Path)
				}
				break renewed
			case <-timeout:
				t.Fatal("no Renewed signal for an 8 s certificate with a 50% threshold")
			}
		}
		select {
		case id := <-typed:
			if id != "short" {
				t.Fatalf("WatchRenewed reported %q, want short", id)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the client's WatchRenewed did not report the renewal")
		}
		secondPEM, _ := s.certs.Get(ctx, "short")
		second := parseChain(t, secondPEM)[0]
		if second.Equal(first) || !second.NotAfter.After(first.NotAfter) {
			t.Fatal("renewal did not replace the certificate")
		}
		pub, _ := key.PublicKey(ctx)
		if reflect.DeepEqual(pub, firstPub) || !reflect.DeepEqual(pub, second.PublicKey) {
			t.Fatal("rotate_key: the key under \"short\" must be new and match the renewed certificate")
		}
	})
	t.Run("BadInputGetsNamedErrorsAndStoresNothing", func(t *testing.T) {
		before, _ := s.certs.List(ctx)
		tests := []struct {
			name string
			err  error
			kind fault.Kind
		}{
			{"garbage CSR", func() error {
				_, err := s.certs.Create(ctx, "x", []byte("garbage"), cclient.CreateOptions{Issuer: "self_signed", KeyID: "callers-key"})
				return err
			}(), fault.InvalidArgs},
			{"CSR for a different key", func() error {
				other, _ := s.keys.CreateKeyPair(ctx, "other", "ec-p256")
				signer, _ := other.Signer(ctx)
				csr, _ := certs.NewCSR(signer, pkix.Name{CommonName: "x"}, nil)
				_, err := s.certs.Create(ctx, "x", csr, cclient.CreateOptions{Issuer: "self_signed", KeyID: "callers-key"})
				return err
			}(), fault.InvalidArgs},
			{"malformed PEM", s.certs.Import(ctx, "x", "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"), fault.InvalidArgs},
			{"unknown certificate", func() error { _, err := s.certs.Get(ctx, "nope"); return err }(), fault.NotFound},
			{"no policy to ensure", func() error { _, err := s.certs.Ensure(ctx, "nope"); return err }(), fault.NotFound},
			{"empty id", s.certs.Import(ctx, "", "x"), fault.InvalidArgs},
		}
		for _, tt := range tests {
			if !fault.Is(tt.err, tt.kind) {
				t.Errorf("%s: got %v, want %v", tt.name, tt.err, tt.kind)
			}
		}
		var de godbus.Error
		err := s.conn.Object(certsapi.BusName, certsapi.ObjectPath).Call(certsapi.Interface+".CreateCertificate", 0, "x", []byte{0x30}, map[string]godbus.Variant{"validity": godbus.MakeVariant("1h")}).Err
		if !errorsAs(err, &de) || de.Name != bus.ErrInvalidArgs || !strings.Contains(fmt.Sprint(de.Body...), "validity") {
			t.Errorf("option of the wrong type: %v", err)
		}
		after, _ := s.certs.List(ctx)
		if len(after) != len(before) {
			t.Errorf("bad input changed the store: %v → %v", before, after)
		}
	})
	t.Run("SecondUIDReadsButCannotManage", func(t *testing.T) {
		gdbus := func(method string, args ...string) (string, int) {
			argv := append([]string{"call", "--address", s.bus.Address, "--dest", certsapi.BusName,
				"--object-path", string(certsapi.ObjectPath), "--method", certsapi.Interface + "." + method}, args...)
			out, errOut, code := testenv.RunAs(t, testenv.OtherUser, nil, "gdbus", argv...)
			return out + errOut, code
		}
		if out, code := gdbus("GetCertificate", "device-id"); code != 0 || !strings.Contains(out, "BEGIN CERTIFICATE") {
			t.Fatalf("GetCertificate as %s: %d %s", testenv.OtherUser, code, out)
		}
		for _, m := range [][]string{{"DeleteCertificate", "device-id"}, {"ImportCertificate", "mine", "'x'"}, {"EnsureCertificate", "device-id"}} {
			if out, code := gdbus(m[0], m[1:]...); code == 0 || !strings.Contains(out, bus.ErrNotAuthorized) {
				t.Fatalf("%s as %s: %d %s; want NotAuthorized", m[0], testenv.OtherUser, code, out)
			}
		}
		s.polkit.AddRule(t, "certs-manage", testenv.GrantRule("org.edgev2.certs.manage", testenv.OtherUser, "cert_id", "tester-cert"))
		devPEM, _ := s.certs.Get(ctx, "device-id")
		if out, code := gdbus("ImportCertificate", "tester-cert", "'"+devPEM+"'"); code != 0 {
			t.Fatalf("ImportCertificate of the granted id: %d %s", code, out)
		}
		if out, code := gdbus("DeleteCertificate", "device-id"); code == 0 || !strings.Contains(out, bus.ErrNotAuthorized) {
			t.Fatalf("the rule for tester-cert let %s delete device-id: %s", testenv.OtherUser, out)
		}
	})
}

func errorsAs(err error, target *godbus.Error) bool {
	if de, ok := err.(godbus.Error); ok {
		*target = de
		return true
	}
	if de, ok := err.(*godbus.Error); ok {
		*target = *de
		return true
	}
	return false
}
