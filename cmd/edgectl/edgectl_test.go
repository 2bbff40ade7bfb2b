package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgev2/edgev2/internal/testenv"
	mclient "github.com/edgev2/edgev2/modrt/client"
)

func TestEdgectlAgainstTheRealServices(t *testing.T) {
	w := startWorld(t)
	t.Run("KeysCreateListSignWorkAsRoot", func(t *testing.T) { testKeysAsRoot(t, w) })
	t.Run("SignDeniedForOtherUserUntilAPolkitRuleGrantsIt", func(t *testing.T) { testSignAsOtherUser(t, w) })
	t.Run("JSONOutputParsesEverywhere", func(t *testing.T) { testJSONEverywhere(t, w) })
	t.Run("ModulesImportListLogsRemove", func(t *testing.T) { testModules(t, w) })
	t.Run("ImagesPullShowsProgressAndRefusesAWrongPassword", func(t *testing.T) { testImagesPull(t, w) })
	t.Run("CheckReportsAHealthyDevice", func(t *testing.T) { testCheckHealthy(t, w) })
	t.Run("CheckNamesEachBrokenSetupWithItsFix", func(t *testing.T) { testCheckBroken(t, w) })
	t.Run("CheckWarnsOnceOfAnUnissuedCertificateAndItsFixIssuesIt", func(t *testing.T) { testCheckUnissued(t, w) })
	t.Run("CheckAsAnOrdinaryUserSaysToRunAsRoot", func(t *testing.T) { testCheckAsOrdinaryUser(t, w) })
	t.Run("CheckNamesAWrongClockAndCertificatesNearExpiry", func(t *testing.T) { testCheckClock(t, w) })
	t.Run("SupportBundleHoldsNoSecret", func(t *testing.T) { testSupportBundle(t, w) })
	t.Run("IdentityReprovisionProvisionsAgain", func(t *testing.T) { testReprovision(t, w) })
}

type keyOut struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	PublicKey string `json:"public_key"`
}

func verifyECDSA(t *testing.T, pubB64, sigB64 string, data []byte) bool {
	t.Helper()
	der, _ := base64.StdEncoding.DecodeString(pubB64)
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		t.Fatalf("public key: %v", err)
	}
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(sigB64))
	if err != nil {
		t.Fatalf("signature %q is not base64: %v", sigB64, err)
	}
	digest := sha256.Sum256(data)
	return ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), digest[:], sig)
}

func testKeysAsRoot(t *testing.T, w *world) {
	var created keyOut
	w.runJSON(t, &created, "keys", "create", "app-signing", "--type", "ec-p256", "--json")
	if created.ID != "app-signing" || created.Type != "ec-p256" || created.PublicKey == "" {
		t.Fatalf("keys create printed %+v", created)
	}
	var list []keyOut
	w.runJSON(t, &list, "keys", "list", "--json")
	found := false
	for _, k := range list {
		found = found || (k.ID == "app-signing" && k.PublicKey == created.PublicKey)
	}
	if !found {
		t.Fatalf("keys list does not show app-signing: %+v", list)
	}
	out, errOut, code := w.run(t, "root", "keys", "list")
	if code != 0 || !strings.Contains(out, "ID") || !strings.Contains(out, "app-signing") || !strings.Contains(out, "ec-p256") {
		t.Fatalf("keys list table (exit %d): %s %s", code, out, errOut)
	}
	var sig map[string]string
	w.runJSON(t, &sig, "keys", "sign", "app-signing", "--data", "firmware-1.2.bin", "--json")
	if sig["mechanism"] != "ecdsa-sha256" || !verifyECDSA(t, created.PublicKey, sig["signature"], []byte("firmware-1.2.bin")) {
		t.Fatalf("the signature from keys sign does not verify: %v", sig)
	}
	// Errors come back as one line naming the key, with a distinct exit code.
	_, errOut, code = w.run(t, "root", "keys", "sign", "no-such-key", "--mechanism", "ecdsa-sha256", "--data", "x")
	if code != exitNotFound || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, `"no-such-key"`) {
		t.Fatalf("sign with a missing key: exit %d, stderr %q", code, errOut)
	}
	_, errOut, code = w.run(t, "root", "keys", "sign")
	if code != exitUsage || !strings.Contains(errOut, "usage: edgectl keys sign") {
		t.Fatalf("sign without a key: exit %d, stderr %q", code, errOut)
	}
}

func testSignAsOtherUser(t *testing.T, w *world) {
	var created keyOut
	w.runJSON(t, &created, "keys", "create", "tester-key", "--json")
	sign := func() (string, string, int) {
		return w.run(t, testenv.OtherUser, "keys", "sign", "tester-key", "--mechanism", "ecdsa-sha256", "--data", "telemetry")
	}
	out, errOut, code := sign()
	if code != exitNotAuthz || !strings.Contains(errOut, "not authorized") || !strings.Contains(errOut, "org.edgev2.keys.use") || out != "" {
		t.Fatalf("an ordinary user signing: exit %d, stdout %q, stderr %q; want exit %d naming org.edgev2.keys.use", code, out, errOut, exitNotAuthz)
	}
	if strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Fatalf("the denial is not one line: %q", errOut)
	}
	w.polkit.AddRule(t, "edgectl-tester", testenv.GrantRule("org.edgev2.keys.use", testenv.OtherUser, "key_id", "tester-key"))
	out, errOut, code = sign()
	if code != 0 {
		t.Fatalf("after the rule, sign: exit %d: %s", code, errOut)
	}
	if !verifyECDSA(t, created.PublicKey, out, []byte("telemetry")) {
		t.Fatalf("the ordinary user's signature does not verify: %q", out)
	}
	// The rule grants that key only.
	if _, _, code := w.run(t, testenv.OtherUser, "keys", "sign", "app-signing", "--mechanism", "ecdsa-sha256", "--data", "x"); code != exitNotAuthz {
		t.Fatalf("the rule for tester-key let the user sign with app-signing (exit %d)", code)
	}
}

func testJSONEverywhere(t *testing.T, w *world) {
	var certsOut []map[string]any
	w.runJSON(t, &certsOut, "certs", "list", "--json")
	ids := map[string]bool{}
	for _, c := range certsOut {
		ids[fmt.Sprint(c["id"])] = true
	}
	if !ids["device-cert"] || !ids["labcloud-ca"] {
		t.Fatalf("certs list: %v", certsOut)
	}
	var show map[string]any
	w.runJSON(t, &show, "certs", "show", "device-cert", "--json")
	if !strings.Contains(fmt.Sprint(show["subject"]), "edge-gw-1") || !strings.HasPrefix(fmt.Sprint(show["pem"]), "-----BEGIN CERTIFICATE") {
		t.Fatalf("certs show: %v", show)
	}
	var id map[string]any
	w.runJSON(t, &id, "identity", "show", "--json")
	if id["state"] != "provisioned" || fmt.Sprint(id["device"].(map[string]any)["device_id"]) != "edge-gw-1" {
		t.Fatalf("identity show: %v", id)
	}
	// JSON keeps the machine form (Unix seconds); the table shows RFC 3339.
	at, ok := id["provisioning"].(map[string]any)["provisioned_at"].(float64)
	if !ok || at < 1e9 {
		t.Fatalf("identity show --json: provisioned_at is not Unix seconds: %v", id["provisioning"])
	}
	human, errOut, code := w.run(t, "root", "identity", "show")
	want := time.Unix(int64(at), 0).UTC().Format(time.RFC3339) + " ("
	if code != 0 || !strings.Contains(human, want) || strings.Contains(human, fmt.Sprint(int64(at))) {
		t.Fatalf("identity show (exit %d) lacks %q:\n%s%s", code, want, human, errOut)
	}
	// A failure with --json is one JSON document on stdout too.
	out, errOut, code := w.run(t, "root", "keys", "sign", "no-such-key", "--mechanism", "ecdsa-sha256", "--data", "x", "--json")
	var e struct {
		Error errorJSON `json:"error"`
	}
	if code != exitNotFound || json.Unmarshal([]byte(out), &e) != nil || e.Error.Kind != "not_found" ||
		e.Error.ExitCode != exitNotFound || !strings.Contains(e.Error.Message, `"no-such-key"`) || !strings.Contains(errOut, `"no-such-key"`) {
		t.Fatalf("keys sign --json of a missing key: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	var st []serviceStatus
	w.runJSON(t, &st, "status", "--json")
	if len(st) != 4 {
		t.Fatalf("status: %v", st)
	}
	for _, s := range st {
		if !s.Running || s.Pid == 0 {
			t.Fatalf("status says %s is not running: %+v", s.Service, s)
		}
	}
	var mods []map[string]any
	w.runJSON(t, &mods, "modules", "list", "--json")
}

func testModules(t *testing.T, w *world) {
	archive := testenv.BuildImage(t, "edgectl.test/hello:1", testenv.ImageConfig{
		Entrypoint: []string{"/bin/sh", "-c", "echo hello-from-module; sleep 3; echo later-line; sleep 300"}})
	var imp map[string]any
	w.runJSON(t, &imp, "images", "import", archive, "--json")
	if !strings.Contains(fmt.Sprint(imp["images"]), "edgectl.test/hello:1") {
		t.Fatalf("images import: %v", imp)
	}
	spec := `{"name":"hello","type":"docker","restartPolicy":"never","config":{"settings":{"image":"edgectl.test/hello:1","createOptions":{}}}}`
	if err := mclient.New(w.conn).CreateModule(testCtx(t), "hello", spec, true); err != nil {
		t.Fatal(err)
	}
	var logs map[string]string
	if !testenv.WaitFor(10*time.Second, func() bool {
		w.runJSON(t, &logs, "modules", "logs", "hello", "--json")
		return strings.Contains(logs["logs"], "hello-from-module")
	}) {
		t.Fatalf("modules logs: %v", logs)
	}
	testLogsFollow(t, w)
	var mods []map[string]any
	w.runJSON(t, &mods, "modules", "list", "--json")
	if len(mods) != 1 || mods[0]["name"] != "hello" || mods[0]["status"] != "running" {
		t.Fatalf("modules list: %v", mods)
	}
	out, errOut, code := w.run(t, "root", "modules", "stop", "hello", "--timeout", "1s")
	if code != 0 || !strings.Contains(out, "stop done") {
		t.Fatalf("modules stop: exit %d %s %s", code, out, errOut)
	}
	if _, errOut, code := w.run(t, "root", "modules", "rm", "hello"); code != 0 {
		t.Fatalf("modules rm: exit %d %s", code, errOut)
	}
	if _, errOut, code := w.run(t, "root", "modules", "start", "hello"); code != exitNotFound {
		t.Fatalf("starting a removed module: exit %d %s", code, errOut)
	}
}

// healthyChecks must be ok on the world.
var healthyChecks = []string{"config.keyd", "config.certd", "config.identityd", "config.modrtd", "bus",
	"service.keyd", "service.certd", "service.identityd", "service.modrtd", "polkit.actions", "keys.token",
	"certs.device-cert", "certs.expiry", "clock", "containerd", "modules.network", "cloud.hub", "cloud.est"}

func testCheckHealthy(t *testing.T, w *world) {
	start := time.Now()
	rep, code := w.check(t)
	t.Logf("edgectl check on a healthy device: %d checks in %v", len(rep.Checks), time.Since(start).Round(time.Millisecond))
	if code != 0 || rep.Errors != 0 {
		t.Fatalf("check on a healthy device: exit %d, %+v", code, rep)
	}
	for _, name := range healthyChecks {
		if c, ok := rep.find(name); !ok || c.Status != statusOK {
			t.Errorf("check %s = %+v (present %v), want ok", name, c, ok)
		}
	}
	human := []string{"check"}
	for _, a := range w.checkArgs()[3:] {
		human = append(human, a)
	}
	out, _, code := w.run(t, "root", human...)
	if code != 0 || !strings.Contains(out, "0 errors") {
		t.Fatalf("human check output (exit %d):\n%s", code, out)
	}
}

func testImagesPull(t *testing.T, w *world) {
	archive := testenv.BuildImage(t, "edgectl.test/pulled:1", testenv.ImageConfig{Entrypoint: []string{"/bin/sh", "-c", "echo pulled"}})
	testenv.ImportImage(t, w.ctr, "registry-src", archive)
	remote := w.reg.Push(t, w.ctr, "registry-src", "edgectl.test/pulled:1")
	dir := testenv.SharedTempDir(t, "edgectl-pw")
	good, bad := filepath.Join(dir, "good"), filepath.Join(dir, "bad")
	os.WriteFile(good, []byte(registryPassword+"\n"), 0o600)
	os.WriteFile(bad, []byte("not-the-password\n"), 0o600)

	out, errOut, code := w.run(t, "root", "images", "pull", remote, "--username", "edge", "--password-file", bad)
	if code != exitNotAuthz || strings.Contains(out+errOut, "not-the-password") {
		t.Fatalf("pull with a wrong password: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	out, errOut, code = w.run(t, "root", "images", "pull", remote, "--username", "edge", "--password-file", good, "--json")
	if code != 0 {
		t.Fatalf("images pull: exit %d: %s", code, errOut)
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(out), &res); err != nil || !strings.HasPrefix(fmt.Sprint(res["digest"]), "sha256:") {
		t.Fatalf("images pull --json: %v: %s", err, out)
	}
	// Not a terminal: one plain line per PullProgress signal, no carriage returns.
	if !strings.Contains(errOut, "pull "+remote+": ") || strings.Contains(errOut, "\r") {
		t.Fatalf("progress on a pipe: %q", errOut)
	}
	if strings.Contains(out+errOut, registryPassword) {
		t.Fatal("the registry password was printed")
	}
}

// testLogsFollow: `modules logs -f` prints a line the module writes after
// it started, and stops cleanly on SIGINT.
func testLogsFollow(t *testing.T, w *world) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.edgectl, "modules", "logs", "hello", "-f")
	cmd.Env = append(os.Environ(), w.env...)
	var out testenv.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if deadline, _ := ctx.Deadline(); !testenv.WaitFor(time.Until(deadline), func() bool { return strings.Contains(out.String(), "later-line") }) {
		cmd.Process.Kill()
		t.Fatalf("logs -f never printed the later line: %q", out.String())
	}
	cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("logs -f did not exit cleanly on SIGINT: %v", err)
	}
	if n := strings.Count(out.String(), "hello-from-module"); n != 1 {
		t.Fatalf("logs -f printed the first line %d times: %q", n, out.String())
	}
}

func testReprovision(t *testing.T, w *world) {
	var res map[string]string
	w.runJSON(t, &res, "identity", "reprovision", "--json")
	if res["state"] == "" {
		t.Fatalf("identity reprovision: %v", res)
	}
	var id map[string]any
	if !testenv.WaitFor(30*time.Second, func() bool {
		w.runJSON(t, &id, "identity", "show", "--json")
		return id["state"] == "provisioned"
	}) {
		t.Fatalf("not provisioned again: %v", id)
	}
	if _, errOut, code := w.run(t, testenv.OtherUser, "identity", "reprovision"); code != exitNotAuthz || !strings.Contains(errOut, "org.edgev2.identity.reprovision") {
		t.Fatalf("reprovision as an ordinary user: exit %d %s", code, errOut)
	}
}

// testCheckUnissued: a certificate certd issues by policy but has not issued
// yet is one warning, and its fix -- `edgectl certs renew ID`, as printed --
// issues it (the certificate has no object to call Renew on yet).
func testCheckUnissued(t *testing.T, w *world) {
	if err := w.certs.Delete(testCtx(t), "device-cert"); err != nil {
		t.Fatal(err)
	}
	rep, _ := w.check(t)
	var found []checkResult
	for _, c := range rep.Checks {
		if c.Name == "certs.device-cert" {
			found = append(found, c)
		}
	}
	if len(found) != 1 || found[0].Status != statusWarning || !strings.Contains(found[0].Message, "not issued yet") ||
		!strings.Contains(found[0].Fix, "edgectl certs renew device-cert") {
		t.Fatalf("certs.device-cert reported %d times: %+v; want one warning with the renew fix", len(found), found)
	}
	if out, errOut, code := w.run(t, "root", "certs", "renew", "device-cert"); code != 0 || !strings.Contains(out, "certificate device-cert issued") {
		t.Fatalf("the fix as printed: exit %d %s %s", code, out, errOut)
	}
	if rep, code := w.check(t); code != 0 {
		t.Fatalf("check after the fix: exit %d %+v", code, rep.Checks)
	} else if c, _ := rep.find("certs.device-cert"); c.Status != statusOK {
		t.Fatalf("certs.device-cert after the fix: %+v", c)
	}
}
