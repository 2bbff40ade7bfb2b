package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// softHSMLibPaths are where distributions install the SoftHSM2 module.
var softHSMLibPaths = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
	"/usr/lib64/pkcs11/libsofthsm2.so",
}

// SoftHSMToken is an initialised SoftHSM2 token in a private token directory.
//
// SoftHSM reads SOFTHSM2_CONF from the environment when the module is
// initialised, so one process can use only one configuration at a time: an
// in-process test sets it (t.Setenv("SOFTHSM2_CONF", tok.Conf)) before it
// opens the module, and a test that needs two tokens makes the second with
// AddToken so both live under the same configuration. Subprocesses (daemons,
// pkcs11-tool) get it through Env.
type SoftHSMToken struct {
	Conf    string // softhsm2.conf path
	Dir     string // directory holding the conf and the token directory
	Label   string
	PIN     string // user PIN
	SOPIN   string
	LibPath string // the PKCS#11 module

	uid, gid int
}

// NewSoftHSMToken makes a token labelled label in a fresh token directory and
// hands the directory to uid:gid, so a daemon running as that user can use it.
// The directory is removed on cleanup.
func NewSoftHSMToken(t TB, label string, uid, gid int) *SoftHSMToken {
	t.Helper()
	lib := SoftHSMLibPath()
	if lib == "" {
		Missing(t, "SoftHSM2", "libsofthsm2.so not found in "+strings.Join(softHSMLibPaths, ", "))
		return nil
	}
	if lookPrograms(t, program{"softhsm2-util", "softhsm2"}) == nil {
		return nil
	}
	dir := SharedTempDir(t, "softhsm")
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		t.Fatalf("make SoftHSM token dir: %v", err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	text := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokens)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatalf("write %s: %v", conf, err)
	}
	base := &SoftHSMToken{Conf: conf, Dir: dir, LibPath: lib, uid: uid, gid: gid}
	return base.AddToken(t, label)
}

// AddToken initialises another token under the same configuration (and so
// usable from the same process) with its own label and PINs.
func (tok *SoftHSMToken) AddToken(t TB, label string) *SoftHSMToken {
	t.Helper()
	next := *tok
	next.Label = label
	next.PIN = randomPIN(t)
	next.SOPIN = randomPIN(t)
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label, "--pin", next.PIN, "--so-pin", next.SOPIN)
	cmd.Env = append(os.Environ(), next.Env()...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util --init-token --label %s: %v\n%s", label, err, out)
	}
	if err := chownTree(next.Dir, next.uid, next.gid); err != nil {
		t.Fatalf("hand %s to %d:%d: %v", next.Dir, next.uid, next.gid, err)
	}
	return &next
}

// Env returns the environment a process needs to see this token.
func (tok *SoftHSMToken) Env() []string { return []string{"SOFTHSM2_CONF=" + tok.Conf} }

// KeydConfig are the lines of keyd.toml that put keyd's keys in the token
// (keyd also needs Env).
func (tok *SoftHSMToken) KeydConfig() string {
	return fmt.Sprintf("pkcs11_lib_path = %q\npkcs11_base_slot = %q\n", tok.LibPath, tok.URI())
}

// URI returns the token's PKCS#11 URI with its user PIN, as pkcs11_base_slot takes it.
func (tok *SoftHSMToken) URI() string {
	return "pkcs11:token=" + tok.Label + "?pin-value=" + tok.PIN
}

// SoftHSMLibPath returns the installed SoftHSM2 module, or "".
func SoftHSMLibPath() string { return firstExisting(softHSMLibPaths) }

// randomPIN makes a PIN unique enough that a test can search logs and
// errors for it.
func randomPIN(t TB) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random PIN: %v", err)
	}
	return hex.EncodeToString(b)
}

func chownTree(dir string, uid, gid int) error {
	if uid == os.Getuid() && gid == os.Getgid() {
		return nil
	}
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}
