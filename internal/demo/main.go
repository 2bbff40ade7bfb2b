// Command demo runs the edgev2 flow on this machine with embedded defaults
// and nothing from outside: a private system bus, polkitd, a SoftHSM token
// and the Keys service, then the device-key steps of zero-touch
// provisioning, each printed with its duration. Run it with `make demo`.
package main

import (
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/keys"
	keysapi "github.com/edgev2/edgev2/keys/api"
	"github.com/edgev2/edgev2/keys/client"
)

var shell = flag.Bool("shell", false, "after the steps, keep everything running (the bus, polkitd, the four services, labcloud, containerd) and print how to reach it, until Ctrl-C")

func main() {
	flag.Parse()
	p := &testenv.Program{Name: "demo"}
	p.Run(func() error {
		sp := newStepPrinter(os.Stdout)
		addr, err := demo(p, sp)
		if err != nil || !*shell {
			return err
		}
		sp.paragraph("")
		sp.paragraph("Everything keeps running: the private bus, polkitd, the four services, edgev2-labcloud and containerd. In another shell, as root:")
		fmt.Fprintf(sp.w, "\n  export DBUS_SYSTEM_BUS_ADDRESS=%s\n\n", addr)
		sp.paragraph("then try the tour in README.md (or `edgectl status`). Ctrl-C stops and removes everything.")
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		<-sig
		return nil
	})
}

// binaries are the programs the demo runs, built in its first step.
var binaries = []string{"./cmd/edgev2-keyd", "./cmd/edgev2-certd", "./cmd/edgev2-identityd", "./cmd/edgev2-modrtd",
	"./cmd/edgev2-labcloud", "./cmd/edgectl"}

// demo runs the steps, printing them with sp, and returns the address of
// the bus everything runs on; it stays up until p's cleanups run.
func demo(p testenv.TB, sp *stepPrinter) (string, error) {
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("run as root (sudo make demo): the demo starts dbus-daemon, polkitd and keyd under their own users")
	}
	run := sp.run
	sp.paragraph("edgev2 demo: zero-touch provisioning on one machine — Keys, Certificates, Identity and Module Runtime services on a private system bus, polkit, a SoftHSM token, containerd, and edgev2-labcloud as EST CA, DPS and IoT Hub")
	fmt.Fprintln(sp.w)
	var (
		b    *testenv.Bus
		pk   *testenv.Polkit
		tok  *testenv.SoftHSMToken
		kc   *client.Client
		dev  *client.Key
		uid  int
		gid  int
		addr string
	)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := run("build the services, edgectl and edgev2-labcloud (go build)", func() (string, error) {
		for _, b := range binaries {
			testenv.BuildBinary(p, b)
		}
		return fmt.Sprintf("%d programs", len(binaries)), nil
	}); err != nil {
		return "", err
	}
	if err := run("create service users edgekeys and edgev2-tester", func() (string, error) {
		uid, gid = testenv.EnsureUser(p, testenv.ServiceUser)
		testenv.EnsureUser(p, testenv.OtherUser)
		return fmt.Sprintf("edgekeys uid %d", uid), nil
	}); err != nil {
		return "", err
	}
	if err := run("start a private system-like dbus-daemon", func() (string, error) {
		b = testenv.StartBus(p)
		addr = b.Address
		socket, _, _ := strings.Cut(strings.TrimPrefix(addr, "unix:path="), ",")
		return socket, nil
	}); err != nil {
		return "", err
	}
	if err := run("start polkitd with the edgev2 actions", func() (string, error) {
		pk = testenv.StartPolkit(p, b)
		return "org.freedesktop.PolicyKit1", nil
	}); err != nil {
		return "", err
	}
	if err := run("initialise a SoftHSM2 token", func() (string, error) {
		tok = testenv.NewSoftHSMToken(p, "edgev2-demo", uid, gid)
		return "token " + tok.Label, nil
	}); err != nil {
		return "", err
	}
	if err := run("start edgev2-keyd (PKCS#11 engine) as edgekeys", func() (string, error) {
		dir := testenv.SharedTempDir(p, "demo")
		os.Chown(dir, uid, gid)
		cfg := filepath.Join(dir, "keyd.toml")
		serviceConfigs["keyd.toml"] = cfg
		text := fmt.Sprintf("homedir = %q\npkcs11_lib_path = %q\npkcs11_base_slot = %q\n", dir, tok.LibPath, tok.URI())
		if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
			return "", err
		}
		os.Chown(cfg, uid, gid)
		testenv.StartService(p, b, testenv.ServiceOptions{
			Binary: testenv.BuildBinary(p, "./cmd/edgev2-keyd"), Args: []string{"--config", cfg},
			User: testenv.ServiceUser, Env: tok.Env(), BusName: keysapi.BusName,
		})
		kc = client.New(b.Conn(p))
		engine, err := kc.Engine(ctx)
		return "owns " + keysapi.BusName + ", engine " + engine, err
	}); err != nil {
		return "", err
	}
	if err := run("generate the device key in the token (CreateKeyPair)", func() (string, error) {
		var err error
		dev, err = kc.CreateKeyPair(ctx, "device-id", "ec-p256:rsa-2048:*")
		if err != nil {
			return "", err
		}
		props, err := dev.Properties(ctx)
		return fmt.Sprintf("%s at %s", props.Type, props.Location), err
	}); err != nil {
		return "", err
	}
	if err := run("the key is on the token (pkcs11-tool --list-objects)", func() (string, error) {
		cmd := exec.Command("pkcs11-tool", "--module", tok.LibPath, "--login", "--pin", tok.PIN, "--list-objects", "--type", "privkey")
		cmd.Env = append(os.Environ(), tok.Env()...)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "device-id") {
			return "", fmt.Errorf("pkcs11-tool does not list device-id: %v", err)
		}
		if !strings.Contains(string(out), "never extractable") {
			return "", fmt.Errorf("the device key is extractable:\n%s", out)
		}
		return "label device-id, sensitive, never extractable", nil
	}); err != nil {
		return "", err
	}
	if err := run("sign a CSR-sized payload over the bus; openssl verifies", func() (string, error) {
		data := []byte("CN=device-id,O=edgev2 demo certification request info")
		sig, err := dev.Sign(ctx, keys.MechECDSASHA256, data)
		if err != nil {
			return "", err
		}
		props, _ := dev.Properties(ctx)
		dir := p.TempDir()
		os.WriteFile(filepath.Join(dir, "pub.der"), props.PublicKeyDER, 0o600)
		os.WriteFile(filepath.Join(dir, "data"), data, 0o600)
		os.WriteFile(filepath.Join(dir, "sig"), sig, 0o600)
		if out, err := exec.Command("openssl", "pkey", "-pubin", "-inform", "DER", "-in", filepath.Join(dir, "pub.der"), "-out", filepath.Join(dir, "pub.pem")).CombinedOutput(); err != nil {
			return "", fmt.Errorf("openssl pkey: %v: %s", err, out)
		}
		out, err := exec.Command("openssl", "dgst", "-sha256", "-verify", filepath.Join(dir, "pub.pem"), "-signature", filepath.Join(dir, "sig"), filepath.Join(dir, "data")).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("openssl: %v: %s", err, out)
		}
		return strings.TrimSpace(string(out)), nil
	}); err != nil {
		return "", err
	}
	if err := run("import the DPS symmetric key; derive a module SAS key", func() (string, error) {
		sas := sha256.Sum256([]byte("demo group enrollment key"))
		if _, err := kc.CreateKey(ctx, "device-sas", "sign", sas[:]); err != nil {
			return "", err
		}
		master, err := kc.CreateKey(ctx, "module-master", "derive", nil)
		if err != nil {
			return "", err
		}
		derived, err := master.SignDerived(ctx, []byte("edgeHub:1:primary"), []byte("myhub.azure-devices.net/devices/dev1/modules/edgeHub\n1700000000"))
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("HMAC-SHA256 under the derived key: %x…", derived[:8]), nil
	}); err != nil {
		return "", err
	}
	deny := func() (string, int) {
		_, errOut, code := testenv.RunAs(p, testenv.OtherUser, nil, "gdbus", "call", "--address", addr, "--dest", keysapi.BusName,
			"--object-path", string(dev.Path), "--method", keysapi.KeyInterface+".Sign", "ecdsa-sha256", "[byte 0x01]", "{}")
		return strings.TrimSpace(errOut), code
	}
	if err := run("a second uid is denied by the shipped polkit defaults", func() (string, error) {
		msg, code := deny()
		if code == 0 || !strings.Contains(msg, "org.edgev2.Error.NotAuthorized") {
			return "", fmt.Errorf("expected NotAuthorized, got exit %d: %s", code, msg)
		}
		return "org.edgev2.Error.NotAuthorized", nil
	}); err != nil {
		return "", err
	}
	if err := run("a polkit rule grants it exactly key device-id", func() (string, error) {
		pk.AddRule(p, "demo", fmt.Sprintf(`polkit.addRule(function(action, subject) {
  if (action.id == "org.edgev2.keys.use" && subject.user == %q && action.lookup("key_id") == "device-id")
    return polkit.Result.YES;
});`, testenv.OtherUser))
		msg, code := deny()
		if code != 0 {
			return "", fmt.Errorf("still denied: %s", msg)
		}
		return "Sign as " + testenv.OtherUser + " succeeds", nil
	}); err != nil {
		return "", err
	}
	lab, caPEM, err := certSteps(p, run, b, pk, ctx, kc, uid, gid)
	if err != nil {
		return "", err
	}
	if err := identitySteps(p, run, b, pk, ctx, lab, caPEM); err != nil {
		return "", err
	}
	if err := moduleSteps(p, run, b, pk, ctx); err != nil {
		return "", err
	}
	if err := run("edgectl check: the demo device is healthy", func() (string, error) { return checkDevice(p, b) }); err != nil {
		return "", err
	}
	if err := operationalCertSteps(p, run, b, pk, ctx, kc, lab); err != nil {
		return "", err
	}
	fmt.Fprintln(sp.w)
	sp.paragraph(fmt.Sprintf("summary: %d steps passed in %s; everything started here is stopped and removed on exit.", len(sp.steps), seconds(sp.total())))
	return addr, nil
}
