package adapter_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/internal/testpki"
	"github.com/edgev2/edgev2/keys"
	"github.com/edgev2/edgev2/keys/api"
	"github.com/edgev2/edgev2/keys/client"
)

// keyd is one Keys service under test: a private system-like bus, the real
// polkitd, and edgev2-keyd running as edgekeys (a testenv.Device).
type keyd struct {
	engine string
	dev    *testenv.Device
	bus    *testenv.Bus
	polkit *testenv.Polkit
	svc    *testenv.Service
	conn   *godbus.Conn
	keys   *client.Client
	env    []string // keyd's environment beyond the bus address
}

// startKeyd starts keyd with the file or the pkcs11 (SoftHSM) engine;
// extra is appended to its config file.
func startKeyd(t *testing.T, engine, extra string) *keyd {
	t.Helper()
	if engine != "pkcs11" {
		return startKeydOn(t, engine, testenv.Daemon{Config: extra})
	}
	testenv.RequireRoot(t)
	uid, gid := testenv.EnsureUser(t, testenv.ServiceUser)
	tok := testenv.NewSoftHSMToken(t, "edgev2-test", uid, gid)
	return startKeydOn(t, engine, testenv.Daemon{Config: tok.KeydConfig() + extra, Env: tok.Env()})
}

// startKeydOn starts keyd on a Device, as dm says.
func startKeydOn(t *testing.T, engine string, dm testenv.Daemon) *keyd {
	t.Helper()
	d := testenv.StartDevice(t, testenv.DeviceOptions{Keyd: &dm})
	return &keyd{engine: engine, dev: d, bus: d.Bus, polkit: d.Polkit, svc: d.Daemon(testenv.Keyd), conn: d.Conn(), keys: d.Keys(), env: dm.Env}
}

// gdbusAs calls a method as another user with gdbus, which prints the D-Bus
// error name ("GDBus.Error:org.edgev2.Error.NotAuthorized: ...").
func (k *keyd) gdbusAs(t *testing.T, user string, path godbus.ObjectPath, method string, args ...string) (string, string, int) {
	t.Helper()
	argv := append([]string{"call", "--address", k.bus.Address, "--dest", api.BusName,
		"--object-path", string(path), "--method", method}, args...)
	return testenv.RunAs(t, user, nil, "gdbus", argv...)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// onEachEngine runs test on keyd with the file engine and with a SoftHSM
// token, each checked to say which engine it is.
func onEachEngine(t *testing.T, test func(t *testing.T, k *keyd)) {
	for _, engine := range []string{"file", "pkcs11"} {
		t.Run(engine, func(t *testing.T) {
			k := startKeyd(t, engine, "")
			if got, err := k.keys.Engine(ctxT(t)); err != nil || got != engine {
				t.Fatalf("Engine = %q, %v; want %q", got, err, engine)
			}
			test(t, k)
		})
	}
}

func TestKeydRoundTripsEveryMethod(t *testing.T) {
	onEachEngine(t, func(t *testing.T, k *keyd) {
		t.Run("SignaturesVerifyWithOpenSSL", func(t *testing.T) { testSignaturesVerifyWithOpenSSL(t, k) })
		t.Run("SymmetricKeys", func(t *testing.T) { testSymmetricKeys(t, k) })
		t.Run("RSAOAEPInteroperatesWithOpenSSL", func(t *testing.T) { testOAEPWithOpenSSL(t, k) })
		t.Run("ManageKeys", func(t *testing.T) { testManageKeys(t, k) })
		t.Run("CryptoSignerMakesCertificatesAndTLS", func(t *testing.T) { testCryptoSigner(t, k) })
		t.Run("BadInputGetsNamedErrors", func(t *testing.T) { testBadInput(t, k) })
		t.Run("SecondUIDDeniedByDefault", func(t *testing.T) { testSecondUIDDenied(t, k) })
		t.Run("RuleGrantsSecondUIDExactlyOneKey", func(t *testing.T) { testRuleGrantsOneKey(t, k) })
	})
}

func openssl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("openssl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func writePublicPEM(t *testing.T, der []byte) string {
	t.Helper()
	dir := t.TempDir()
	derPath := filepath.Join(dir, "pub.der")
	os.WriteFile(derPath, der, 0o600)
	pemPath := filepath.Join(dir, "pub.pem")
	openssl(t, "pkey", "-pubin", "-inform", "DER", "-in", derPath, "-out", pemPath)
	return pemPath
}

func testSignaturesVerifyWithOpenSSL(t *testing.T, k *keyd) {
	ctx := ctxT(t)
	data := []byte("zero-touch provisioning payload")
	digest := sha256.Sum256(data)
	types := []string{"ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096"}
	for _, typ := range types {
		t.Run(typ, func(t *testing.T) {
			key, err := k.keys.CreateKeyPair(ctx, "sig-"+typ, typ)
			if err != nil {
				t.Fatal(err)
			}
			props, err := key.Properties(ctx)
			if err != nil || props.Type != typ || props.ID != "sig-"+typ {
				t.Fatalf("properties = %+v, %v", props, err)
			}
			pub := writePublicPEM(t, props.PublicKeyDER)
			dir := t.TempDir()
			dataPath := filepath.Join(dir, "data")
			os.WriteFile(dataPath, data, 0o600)
			digestPath := filepath.Join(dir, "digest")
			os.WriteFile(digestPath, digest[:], 0o600)
			type check struct {
				mech, input string
				args        []string
			}
			var checks []check
			if strings.HasPrefix(typ, "ec") {
				checks = []check{
					{keys.MechECDSASHA256, "data", []string{"dgst", "-sha256", "-verify", pub}},
					{keys.MechECDSA, "digest", []string{"pkeyutl", "-verify", "-pubin", "-inkey", pub, "-in", digestPath}},
				}
			} else {
				checks = []check{
					{keys.MechRSAPKCS1SHA256, "data", []string{"dgst", "-sha256", "-verify", pub}},
					{keys.MechRSAPSSSHA256, "data", []string{"dgst", "-sha256", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32", "-verify", pub}},
				}
			}
			for _, c := range checks {
				in := data
				if c.input == "digest" {
					in = digest[:]
				}
				sig, err := key.Sign(ctx, c.mech, in)
				if err != nil {
					t.Fatalf("Sign %s: %v", c.mech, err)
				}
				sigPath := filepath.Join(dir, "sig-"+c.mech)
				os.WriteFile(sigPath, sig, 0o600)
				args := append([]string{}, c.args...)
				if args[0] == "dgst" {
					args = append(args, "-signature", sigPath, dataPath)
				} else {
					args = append(args, "-sigfile", sigPath)
				}
				if out := openssl(t, args...); !strings.Contains(out, "Verified Successfully") && !strings.Contains(out, "Verified OK") {
					t.Fatalf("openssl did not verify the %s signature: %s", c.mech, out)
				}
				if ok, err := key.Verify(ctx, c.mech, in, sig); err != nil || !ok {
					t.Fatalf("Verify %s = %v, %v", c.mech, ok, err)
				}
				sig[len(sig)/2] ^= 0x40
				if ok, err := key.Verify(ctx, c.mech, in, sig); err != nil || ok {
					t.Fatalf("Verify of a corrupted %s signature = %v, %v", c.mech, ok, err)
				}
			}
		})
	}
}

func testSymmetricKeys(t *testing.T, k *keyd) {
	ctx := ctxT(t)
	master := []byte("device-master-key-0123456789abcdef")
	mk, err := k.keys.CreateKey(ctx, "master", "derive", master)
	if err != nil {
		t.Fatal(err)
	}
	sk, err := k.keys.CreateKey(ctx, "device-sas", "sign", master)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mk.Sign(ctx, keys.MechHMACSHA256, []byte("x")); !fault.Is(err, fault.InvalidArgs) {
		t.Fatalf("plain Sign with a derive (master) key = %v; want InvalidArgs (it would reveal derived keys)", err)
	}
	if _, err := sk.ExportDerived(ctx, []byte("x")); !fault.Is(err, fault.InvalidArgs) {
		t.Fatalf("ExportDerived from a sign key = %v; want InvalidArgs", err)
	}
	sig, err := sk.Sign(ctx, keys.MechHMACSHA256, []byte("sr=hub&se=1"))
	if err != nil {
		t.Fatal(err)
	}
	if want := opensslHMAC(t, master, []byte("sr=hub&se=1")); fmt.Sprintf("%x", sig) != want {
		t.Fatalf("HMAC = %x, openssl says %s", sig, want)
	}
	deriv := []byte("edgeHub:gen-1:primary")
	derived, err := mk.ExportDerived(ctx, deriv)
	if err != nil || fmt.Sprintf("%x", derived) != opensslHMAC(t, master, deriv) {
		t.Fatalf("ExportDerived = %x, %v", derived, err)
	}
	dsig, err := mk.SignDerived(ctx, deriv, []byte("payload"))
	if err != nil || fmt.Sprintf("%x", dsig) != opensslHMAC(t, derived, []byte("payload")) {
		t.Fatalf("SignDerived = %x, %v", dsig, err)
	}
	if ok, err := sk.Verify(ctx, keys.MechHMACSHA256, []byte("sr=hub&se=1"), sig); err != nil || !ok {
		t.Fatalf("Verify HMAC = %v, %v", ok, err)
	}
	// Generated keys too, and AES-256-GCM with and without a caller iv.
	gen, err := k.keys.CreateKey(ctx, "generated-sign", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gen.Sign(ctx, keys.MechHMACSHA256, []byte("x")); err != nil {
		t.Fatal(err)
	}
	aesKey, err := k.keys.CreateKey(ctx, "aes", "encrypt", nil)
	if err != nil {
		t.Fatal(err)
	}
	pt := []byte("module secret")
	iv := []byte("0123456789ab")
	ct, err := aesKey.Encrypt(ctx, keys.MechAES256GCM, pt, iv, []byte("aad"))
	if err != nil || len(ct) != len(pt)+16 {
		t.Fatalf("Encrypt = %d bytes, %v", len(ct), err)
	}
	if got, err := aesKey.Decrypt(ctx, keys.MechAES256GCM, ct, iv, []byte("aad")); err != nil || string(got) != string(pt) {
		t.Fatalf("Decrypt = %q, %v", got, err)
	}
	ct[0] ^= 1
	if _, err := aesKey.Decrypt(ctx, keys.MechAES256GCM, ct, iv, []byte("aad")); !fault.Is(err, fault.InvalidArgs) {
		t.Fatalf("Decrypt of tampered ciphertext = %v, want InvalidArgs", err)
	}
	auto, err := aesKey.Encrypt(ctx, keys.MechAES256GCM, pt, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := aesKey.Decrypt(ctx, keys.MechAES256GCM, auto, nil, nil); err != nil || string(got) != string(pt) {
		t.Fatalf("Decrypt (random iv) = %q, %v", got, err)
	}
	// An imported AES key gives the same ciphertext as openssl would.
	aesVal := []byte("0123456789abcdef0123456789abcdef")
	imp, err := k.keys.CreateKey(ctx, "aes-imported", "encrypt", aesVal)
	if err != nil {
		t.Fatal(err)
	}
	ct2, err := imp.Encrypt(ctx, keys.MechAES256GCM, pt, iv, nil)
	if err != nil {
		t.Fatal(err)
	}
	again, err := k.keys.CreateKey(ctx, "aes-imported", "encrypt", aesVal)
	if err != nil || again.Path != imp.Path {
		t.Fatalf("re-import of the same value = %v, %v; want the same key", again, err)
	}
	if _, err := k.keys.CreateKey(ctx, "aes-imported", "encrypt", []byte("another-value-0123456789abcdef!!")); !fault.Is(err, fault.AlreadyExists) {
		t.Fatalf("import of a different value = %v, want AlreadyExists", err)
	}
	got, err := imp.Decrypt(ctx, keys.MechAES256GCM, ct2, iv, nil)
	if err != nil || string(got) != string(pt) {
		t.Fatalf("Decrypt with imported key = %q, %v", got, err)
	}
}

func opensslHMAC(t *testing.T, key, data []byte) string {
	t.Helper()
	cmd := exec.Command("openssl", "mac", "-digest", "SHA256", "-macopt", "hexkey:"+fmt.Sprintf("%x", key), "HMAC")
	cmd.Stdin = strings.NewReader(string(data))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl mac: %v", err)
	}
	return strings.ToLower(strings.TrimSpace(string(out)))
}

func testOAEPWithOpenSSL(t *testing.T, k *keyd) {
	ctx := ctxT(t)
	key, err := k.keys.CreateKeyPair(ctx, "oaep", "rsa-2048")
	if err != nil {
		t.Fatal(err)
	}
	props, _ := key.Properties(ctx)
	pub := writePublicPEM(t, props.PublicKeyDER)
	dir := t.TempDir()
	in := filepath.Join(dir, "pt")
	os.WriteFile(in, []byte("wrapped secret"), 0o600)
	out := filepath.Join(dir, "ct")
	openssl(t, "pkeyutl", "-encrypt", "-pubin", "-inkey", pub, "-in", in, "-out", out,
		"-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256", "-pkeyopt", "rsa_mgf1_md:sha256")
	ct, _ := os.ReadFile(out)
	pt, err := key.Decrypt(ctx, keys.MechRSAOAEPSHA256, ct, nil, nil)
	if err != nil || string(pt) != "wrapped secret" {
		t.Fatalf("Decrypt of openssl's OAEP = %q, %v", pt, err)
	}
	ct2, err := key.Encrypt(ctx, keys.MechRSAOAEPSHA256, []byte("round trip"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := key.Decrypt(ctx, keys.MechRSAOAEPSHA256, ct2, nil, nil); err != nil || string(pt) != "round trip" {
		t.Fatalf("OAEP round trip = %q, %v", pt, err)
	}
}

func testManageKeys(t *testing.T, k *keyd) {
	ctx := ctxT(t)
	// Watch ObjectManager signals on a separate connection.
	watch := k.bus.Conn(t)
	if err := watch.AddMatchSignal(godbus.WithMatchSender(api.BusName), godbus.WithMatchInterface("org.freedesktop.DBus.ObjectManager")); err != nil {
		t.Fatal(err)
	}
	sigs := make(chan *godbus.Signal, 32)
	watch.Signal(sigs)

	a, err := k.keys.CreateKeyPair(ctx, "mgmt/a", "ec-p256")
	if err != nil {
		t.Fatal(err)
	}
	if want := bus.ChildPath(api.ObjectPath, "keys", "mgmt/a"); a.Path != want {
		t.Fatalf("path = %s, want %s", a.Path, want)
	}
	expectSignal(t, sigs, "InterfacesAdded", a.Path)
	if again, err := k.keys.CreateKeyPair(ctx, "mgmt/a", "rsa-2048:ec-p256"); err != nil || again.Path != a.Path {
		t.Fatalf("create-if-missing = %v, %v", again, err)
	}
	if got, err := k.keys.GetKey(ctx, "mgmt/a"); err != nil || got.Path != a.Path {
		t.Fatalf("GetKey = %v, %v", got, err)
	}
	if _, err := k.keys.CreateKeyPair(ctx, "mgmt/b", "ec-p384"); err != nil {
		t.Fatal(err)
	}
	pubB, _ := k.keys.Key("mgmt/b").Properties(ctx)
	ids, err := k.keys.ListKeys(ctx)
	if err != nil || !contains(ids, "mgmt/a") || !contains(ids, "mgmt/b") {
		t.Fatalf("ListKeys = %v, %v", ids, err)
	}
	var managed map[godbus.ObjectPath]map[string]map[string]godbus.Variant
	if err := k.conn.Object(api.BusName, api.ObjectPath).Call("org.freedesktop.DBus.ObjectManager.GetManagedObjects", 0).Store(&managed); err != nil {
		t.Fatal(err)
	}
	if got := managed[a.Path][api.KeyInterface]["Id"].Value(); got != "mgmt/a" {
		t.Fatalf("GetManagedObjects[%s] Id = %v", a.Path, got)
	}
	// MoveKey replaces the target: a now holds b's key.
	if err := k.keys.MoveKey(ctx, "mgmt/b", "mgmt/a"); err != nil {
		t.Fatal(err)
	}
	moved, _ := k.keys.Key("mgmt/a").Properties(ctx)
	if moved.Type != "ec-p384" || string(moved.PublicKeyDER) != string(pubB.PublicKeyDER) {
		t.Fatalf("after MoveKey, mgmt/a = %s; want b's key", moved.Type)
	}
	if _, err := k.keys.GetKey(ctx, "mgmt/b"); !fault.Is(err, fault.NotFound) {
		t.Fatalf("GetKey of moved-away id = %v, want NotFound", err)
	}
	if err := k.keys.DeleteKey(ctx, "mgmt/a"); err != nil {
		t.Fatal(err)
	}
	if _, err := k.keys.Key("mgmt/a").Sign(ctx, keys.MechECDSASHA256, []byte("x")); !fault.Is(err, fault.NotFound) {
		t.Fatalf("Sign on deleted key = %v, want NotFound (UnknownObject)", err)
	}
	expectSignal(t, sigs, "InterfacesRemoved", a.Path)
	if err := k.keys.DeleteKey(ctx, "mgmt/a"); !fault.Is(err, fault.NotFound) {
		t.Fatalf("second DeleteKey = %v, want NotFound", err)
	}
}

func expectSignal(t *testing.T, ch chan *godbus.Signal, member string, path godbus.ObjectPath) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case s := <-ch:
			if strings.HasSuffix(s.Name, "."+member) && len(s.Body) > 0 && s.Body[0] == path {
				return
			}
		case <-timeout:
			t.Fatalf("no %s signal for %s", member, path)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// dbusErrorName is the D-Bus error name of err, also when a client wrapped
// it in a fault.Error; otherwise err's type and text, which name no error.
func dbusErrorName(err error) string {
	if name, ok := godbusErrorName(err); ok {
		return name
	}
	var fe *fault.Error
	if errors.As(err, &fe) {
		if name, ok := godbusErrorName(fe.Err); ok {
			return name
		}
	}
	return fmt.Sprintf("%T %v", err, err)
}

func godbusErrorName(err error) (string, bool) {
	var de godbus.Error
	if errors.As(err, &de) {
		return de.Name, true
	}
	var dep *godbus.Error
	if errors.As(err, &dep) {
		return dep.Name, true
	}
	return "", false
}

func testBadInput(t *testing.T, k *keyd) {
	ctx := ctxT(t)
	root := k.conn.Object(api.BusName, api.ObjectPath)
	if _, err := k.keys.CreateKeyPair(ctx, "bad-input-ec", "ec-p256"); err != nil {
		t.Fatal(err)
	}
	if _, err := k.keys.CreateKey(ctx, "bad-input-hmac", "sign", nil); err != nil {
		t.Fatal(err)
	}
	ec := k.conn.Object(api.BusName, bus.ChildPath(api.ObjectPath, "keys", "bad-input-ec"))
	hm := k.conn.Object(api.BusName, bus.ChildPath(api.ObjectPath, "keys", "bad-input-hmac"))
	noOpts := map[string]godbus.Variant{}
	tests := []struct {
		name, want, mentions string
		call                 *godbus.Call
	}{
		{"empty id", bus.ErrInvalidArgs, "empty", root.Call(api.Interface+".CreateKey", 0, "", noOpts)},
		{"huge id", bus.ErrInvalidArgs, "4096 bytes", root.Call(api.Interface+".CreateKeyPair", 0, strings.Repeat("k", 4096), "ec-p256", noOpts)},
		{"control character in id", bus.ErrInvalidArgs, "control", root.Call(api.Interface+".GetKey", 0, "a\nb")},
		{"hostile id not found", bus.ErrNotFound, "../../etc/shadow", root.Call(api.Interface+".GetKey", 0, "../../etc/shadow")},
		{"unknown algorithm", bus.ErrInvalidArgs, "dsa", root.Call(api.Interface+".CreateKeyPair", 0, "x", "dsa-1024", noOpts)},
		{"unknown option", bus.ErrInvalidArgs, "colour", root.Call(api.Interface+".CreateKey", 0, "x", map[string]godbus.Variant{"colour": godbus.MakeVariant("red")})},
		{"option of wrong type", bus.ErrInvalidArgs, "value", root.Call(api.Interface+".CreateKey", 0, "x", map[string]godbus.Variant{"value": godbus.MakeVariant("not bytes")})},
		{"unknown usage", bus.ErrInvalidArgs, "wrap", root.Call(api.Interface+".CreateKey", 0, "x", map[string]godbus.Variant{"usage": godbus.MakeVariant("wrap")})},
		{"unknown mechanism", bus.ErrInvalidArgs, "md5", ec.Call(api.KeyInterface+".Sign", 0, "md5", []byte("x"), noOpts)},
		{"mechanism misfit", bus.ErrInvalidArgs, "hmac-sha256", ec.Call(api.KeyInterface+".Sign", 0, "hmac-sha256", []byte("x"), noOpts)},
		{"encrypt with ec key", bus.ErrInvalidArgs, "aes-256-gcm", ec.Call(api.KeyInterface+".Encrypt", 0, "aes-256-gcm", []byte("x"), noOpts)},
		{"2 MiB payload", bus.ErrInvalidArgs, "1 MiB", hm.Call(api.KeyInterface+".Sign", 0, "hmac-sha256", make([]byte, 2<<20), noOpts)},
		{"export from ec key", bus.ErrInvalidArgs, "derive", ec.Call(api.KeyInterface+".ExportDerived", 0, []byte("d"))},
		{"wrong argument types", "org.freedesktop.DBus.Error.InvalidArgs", "", ec.Call(api.KeyInterface+".Sign", 0, 42, "x")},
		{"delete missing key", bus.ErrNotFound, "nope", root.Call(api.Interface+".DeleteKey", 0, "nope")},
		{"missing object", "org.freedesktop.DBus.Error.UnknownObject", "", k.conn.Object(api.BusName, bus.ChildPath(api.ObjectPath, "keys", "nope")).Call(api.KeyInterface+".Sign", 0, "ecdsa", []byte("x"), noOpts)},
		{"read-only property", "org.freedesktop.DBus.Error.PropertyReadOnly", "", ec.Call("org.freedesktop.DBus.Properties.Set", 0, api.KeyInterface, "Type", godbus.MakeVariant("rsa-2048"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call.Err
			if err == nil {
				t.Fatalf("call succeeded; want %s", tt.want)
			}
			var de godbus.Error
			if !errors.As(err, &de) || de.Name != tt.want {
				t.Fatalf("error = %v (%T); want %s", err, err, tt.want)
			}
			if msg := fmt.Sprint(de.Body...); tt.mentions != "" && !strings.Contains(msg, tt.mentions) {
				t.Fatalf("message %q does not mention %q", msg, tt.mentions)
			}
		})
	}
	// The daemon kept serving and nothing it stored was harmed.
	if _, err := k.keys.Key("bad-input-ec").Sign(ctx, keys.MechECDSASHA256, []byte("still here")); err != nil {
		t.Fatalf("Sign after bad input: %v", err)
	}
}

func testSecondUIDDenied(t *testing.T, k *keyd) {
	ctx := ctxT(t)
	if _, err := k.keys.CreateKey(ctx, "root-only", "sign", nil); err != nil {
		t.Fatal(err)
	}
	path := bus.ChildPath(api.ObjectPath, "keys", "root-only")
	denied := []struct {
		name   string
		path   godbus.ObjectPath
		method string
		args   []string
	}{
		{"Sign", path, api.KeyInterface + ".Sign", []string{"hmac-sha256", "[byte 0x01]", "{}"}},
		{"ExportDerived", path, api.KeyInterface + ".ExportDerived", []string{"[byte 0x01]"}},
		{"CreateKey", api.ObjectPath, api.Interface + ".CreateKey", []string{"mine", "{}"}},
		{"DeleteKey", api.ObjectPath, api.Interface + ".DeleteKey", []string{"root-only"}},
	}
	for _, d := range denied {
		_, errOut, code := k.gdbusAs(t, testenv.OtherUser, d.path, d.method, d.args...)
		if code == 0 || !strings.Contains(errOut, bus.ErrNotAuthorized) {
			t.Errorf("%s as %s: exit %d, %q; want %s", d.name, testenv.OtherUser, code, errOut, bus.ErrNotAuthorized)
		}
	}
	// Reading metadata is allowed by the shipped defaults.
	out, errOut, code := k.gdbusAs(t, testenv.OtherUser, api.ObjectPath, api.Interface+".ListKeys")
	if code != 0 || !strings.Contains(out, "root-only") {
		t.Errorf("ListKeys as %s: exit %d, %s%s", testenv.OtherUser, code, out, errOut)
	}
	// Root is allowed (uid 0 short-circuits).
	if _, err := k.keys.Key("root-only").Sign(ctx, keys.MechHMACSHA256, []byte("x")); err != nil {
		t.Errorf("root Sign: %v", err)
	}
}

func testRuleGrantsOneKey(t *testing.T, k *keyd) {
	ctx := ctxT(t)
	for _, id := range []string{"granted-" + k.engine, "other-" + k.engine} {
		if _, err := k.keys.CreateKey(ctx, id, "sign", nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := k.keys.CreateKey(ctx, "granted-master-"+k.engine, "derive", nil); err != nil {
		t.Fatal(err)
	}
	k.polkit.AddRule(t, "keys-"+k.engine, fmt.Sprintf(`polkit.addRule(function(action, subject) {
  if (action.id == "org.edgev2.keys.use" && subject.user == %q &&
      (action.lookup("key_id") == %q || action.lookup("key_id") == %q)) {
    return polkit.Result.YES;
  }
});`, testenv.OtherUser, "granted-"+k.engine, "granted-master-"+k.engine))
	sign := func(id string) (string, int) {
		out, errOut, code := k.gdbusAs(t, testenv.OtherUser, bus.ChildPath(api.ObjectPath, "keys", id),
			api.KeyInterface+".Sign", "hmac-sha256", "[byte 0x01, 0x02]", "{}")
		return out + errOut, code
	}
	if out, code := sign("granted-" + k.engine); code != 0 {
		t.Fatalf("Sign on the granted key as %s: exit %d: %s", testenv.OtherUser, code, out)
	}
	if out, code := sign("other-" + k.engine); code == 0 || !strings.Contains(out, bus.ErrNotAuthorized) {
		t.Fatalf("Sign on another key as %s: exit %d: %s; want NotAuthorized", testenv.OtherUser, code, out)
	}
	_, errOut, code := k.gdbusAs(t, testenv.OtherUser, bus.ChildPath(api.ObjectPath, "keys", "granted-master-"+k.engine),
		api.KeyInterface+".ExportDerived", "[byte 0x01]")
	if code == 0 || !strings.Contains(errOut, bus.ErrNotAuthorized) {
		t.Fatalf("ExportDerived (a separate action) on the granted key: exit %d: %s; want NotAuthorized", code, errOut)
	}
}

func TestKeydKill9DuringCreatesLosesNoAcknowledgedKey(t *testing.T) {
	for _, engine := range []string{"file", "pkcs11"} {
		t.Run(engine, func(t *testing.T) {
			k := startKeyd(t, engine, "")
			var mu sync.Mutex
			var acked []string
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for w := 0; w < 4; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c := client.New(k.bus.Conn(t))
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						id := fmt.Sprintf("durable-%d-%d", w, i)
						ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
						_, err := c.CreateKeyPair(ctx, id, "ec-p256")
						cancel()
						if err != nil {
							return // the daemon died under us
						}
						mu.Lock()
						acked = append(acked, id)
						mu.Unlock()
					}
				}()
			}
			var n int
			if !testenv.WaitFor(30*time.Second, func() bool {
				mu.Lock()
				n = len(acked)
				mu.Unlock()
				return n >= 40
			}) {
				t.Fatalf("only %d keys created in 30 s", n)
			}
			k.svc.Kill9(t)
			close(stop)
			wg.Wait()
			k.svc.Restart(t)
			ctx := ctxT(t)
			c := client.New(k.bus.Conn(t))
			ids, err := c.ListKeys(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range acked {
				if !contains(ids, id) {
					t.Errorf("acknowledged key %s is gone after kill -9", id)
					continue
				}
				if _, err := c.Key(id).Sign(ctx, keys.MechECDSASHA256, []byte("after restart")); err != nil {
					t.Errorf("acknowledged key %s does not sign after kill -9: %v", id, err)
				}
			}
			// Every key listed (acknowledged or caught mid-creation) is whole.
			for _, id := range ids {
				if _, err := c.Key(id).Properties(ctx); err != nil {
					t.Errorf("key %s is listed but unreadable: %v", id, err)
				}
			}
			t.Logf("%d keys acknowledged before kill -9, %d present after restart", len(acked), len(ids))
		})
	}
}

func TestKeydPreloadedPKCS11Keys(t *testing.T) {
	// A key the user made with pkcs11-tool before keyd ever ran.
	tok := factoryKeyToken(t, "edgev2-preload")

	extra := fmt.Sprintf("\n[preloaded_keys]\nfactory = \"pkcs11:token=%s;object=factory-key\"\nbroken = \"pkcs11:token=%s;object=factory-key?pin-value=wrong\"\n", tok.Label, "no-such-token")
	k := startKeydWithToken(t, tok, extra)
	ctx := ctxT(t)
	key, err := k.keys.GetKey(ctx, "factory")
	if err != nil {
		t.Fatal(err)
	}
	props, err := key.Properties(ctx)
	if err != nil || !props.Preloaded || props.ID != "factory" || props.Type != "ec-p256" || strings.Contains(props.Location, "pin") {
		t.Fatalf("preloaded key properties = %+v, %v", props, err)
	}
	sig, err := key.Sign(ctx, keys.MechECDSASHA256, []byte("factory data"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "data"), []byte("factory data"), 0o600)
	os.WriteFile(filepath.Join(dir, "sig"), sig, 0o600)
	openssl(t, "dgst", "-sha256", "-verify", writePublicPEM(t, props.PublicKeyDER), "-signature", filepath.Join(dir, "sig"), filepath.Join(dir, "data"))
	if err := k.keys.DeleteKey(ctx, "factory"); !fault.Is(err, fault.ReadOnly) {
		t.Fatalf("DeleteKey of a preloaded key = %v, want ReadOnly", err)
	}
	// A preloaded key that cannot load is listed and says why; the rest serve.
	if _, err := k.keys.Key("broken").Sign(ctx, keys.MechECDSASHA256, []byte("x")); !fault.Is(err, fault.Unavailable) || !strings.Contains(err.Error(), "broken") || strings.Contains(err.Error(), "pin-value=wrong") {
		t.Fatalf("Sign with an unloadable preloaded key = %v; want Unavailable naming it, without the PIN", err)
	}
	// A key made by keyd shows up in pkcs11-tool under its id.
	if _, err := k.keys.CreateKeyPair(ctx, "made-by-keyd", "ec-p256"); err != nil {
		t.Fatal(err)
	}
	list := exec.Command("pkcs11-tool", "--module", tok.LibPath, "--login", "--pin", tok.PIN, "--list-objects")
	list.Env = append(os.Environ(), tok.Env()...)
	out, err := list.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "label:      made-by-keyd") {
		t.Fatalf("pkcs11-tool --list-objects does not show made-by-keyd (%v):\n%s", err, out)
	}
}

// factoryKeyToken is a SoftHSM token for keyd holding an EC P-256 key
// pair labelled factory-key, made with pkcs11-tool before keyd ever ran.
func factoryKeyToken(t *testing.T, label string) *testenv.SoftHSMToken {
	t.Helper()
	testenv.RequireRoot(t)
	uid, gid := testenv.EnsureUser(t, testenv.ServiceUser)
	tok := testenv.NewSoftHSMToken(t, label, uid, gid)
	tool := exec.Command("pkcs11-tool", "--module", tok.LibPath, "--login", "--pin", tok.PIN,
		"--keypairgen", "--key-type", "EC:prime256v1", "--label", "factory-key", "--id", "01")
	tool.Env = append(os.Environ(), tok.Env()...)
	if out, err := tool.CombinedOutput(); err != nil {
		t.Fatalf("pkcs11-tool --keypairgen: %v\n%s", err, out)
	}
	exec.Command("chown", "-R", fmt.Sprintf("%d:%d", uid, gid), tok.Dir).Run()
	return tok
}

// startKeydWithToken starts a pkcs11 keyd on an existing token.
func startKeydWithToken(t *testing.T, tok *testenv.SoftHSMToken, extra string) *keyd {
	t.Helper()
	return startKeydOn(t, "pkcs11", testenv.Daemon{Config: tok.KeydConfig() + extra, Env: tok.Env(), Args: []string{}})
}

func TestKeydSecondInstanceRefusesToStartAndFirstKeepsServing(t *testing.T) {
	k := startKeyd(t, "file", "")
	_, errOut, code := testenv.RunAs(t, testenv.ServiceUser, append(k.dev.Env(), k.env...),
		testenv.BuildBinary(t, "./cmd/edgev2-keyd"), "--config", k.dev.ConfigPath(testenv.Keyd))
	if code == 0 || !strings.Contains(errOut, "already owned") {
		t.Fatalf("second keyd: exit %d, %s; want a failure saying the name is already owned", code, errOut)
	}
	if _, err := k.keys.CreateKey(ctxT(t), "still-serving", "sign", nil); err != nil {
		t.Fatalf("first keyd after the second one failed: %v", err)
	}
}

func TestKeydExitsCleanlyOnSIGTERMAndFailsWhenTheBusIsLost(t *testing.T) {
	k := startKeyd(t, "file", "")
	if code := k.svc.Stop(t); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}
	k.svc.Restart(t)
	k.bus.Kill(t)
	if code := k.svc.WaitExit(t, 20*time.Second); code != 1 {
		t.Fatalf("exit code after losing the bus = %d, want 1 (so systemd restarts it)", code)
	}
}

func testCryptoSigner(t *testing.T, k *keyd) {
	ctx := ctxT(t)
	for _, c := range []struct {
		typ string
		alg x509.SignatureAlgorithm
	}{
		{"ec-p256", x509.ECDSAWithSHA256},
		{"ec-p384", x509.ECDSAWithSHA384},
		{"rsa-2048", x509.SHA256WithRSA},
		{"rsa-2048", x509.SHA384WithRSAPSS},
	} {
		t.Run(c.typ+"-"+c.alg.String(), func(t *testing.T) {
			key, err := k.keys.CreateKeyPair(ctx, "signer-"+c.typ, c.typ)
			if err != nil {
				t.Fatal(err)
			}
			signer, err := key.Signer(ctx)
			if err != nil {
				t.Fatal(err)
			}
			tmpl := &x509.Certificate{
				SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "signer-" + c.typ},
				NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
				SignatureAlgorithm: c.alg, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
				ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
				BasicConstraintsValid: true, IsCA: true,
			}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, signer.Public(), signer)
			if err != nil {
				t.Fatalf("CreateCertificate through the bus: %v", err)
			}
			cert, _ := x509.ParseCertificate(der)
			if err := cert.CheckSignatureFrom(cert); err != nil {
				t.Fatalf("self-signed certificate does not verify: %v", err)
			}
			// TLS 1.3 client authentication with the key in keyd (RSA-PSS or ECDSA).
			pool := x509.NewCertPool()
			pool.AddCert(cert)
			srv := testpki.SelfSigned(t, "server")
			srvPool := x509.NewCertPool()
			srvPool.AddCert(srv.Leaf)
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			server := tls.Server(a, &tls.Config{Certificates: []tls.Certificate{srv},
				ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, MinVersion: tls.VersionTLS13})
			client := tls.Client(b, &tls.Config{ServerName: "server", RootCAs: srvPool, MinVersion: tls.VersionTLS13,
				Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: signer}}})
			errs := make(chan error, 1)
			go func() { errs <- server.Handshake() }()
			if err := client.Handshake(); err != nil {
				t.Fatalf("TLS client handshake with the key in keyd: %v", err)
			}
			if err := <-errs; err != nil {
				t.Fatalf("TLS server handshake: %v", err)
			}
			if got := server.ConnectionState().PeerCertificates; len(got) == 0 || !got[0].Equal(cert) {
				t.Fatal("server did not see the client certificate")
			}
		})
	}
}
