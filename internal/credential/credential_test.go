package credential

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgev2/edgev2/fault"
)

func TestValidNameRefusesEverythingThatLeavesTheDirectory(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"edgev2.keyd.pin", true},
		{"edgev2.keyd.pin-2", true},
		{"edgev2.modrtd.edgeAgent.registry-password", true},
		{"", false},
		{".", false},
		{"..", false},
		{"../../etc/shadow", false},
		{"edgev2.keyd/../../x", false},
		{"/etc/shadow", false},
		{"a/b", false},
		{"edgev2..keyd", false},
		{"a b", false},
		{"a\nb", false},
		{"a:b", false}, // would split a LoadCredentialEncrypted= line
		{strings.Repeat("a", 256), false},
	} {
		err := ValidName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("ValidName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestReadTakesTheCredentialFromCredentialsDirectory(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "edgev2.keyd.pin"), []byte("1234\n"), 0o400)
	os.WriteFile(filepath.Join(dir, "edgev2.keyd.empty"), nil, 0o400)
	os.Mkdir(filepath.Join(dir, "edgev2.keyd.dir"), 0o700)
	// A secret next to the credentials directory: a traversal must not reach it.
	os.WriteFile(filepath.Join(filepath.Dir(dir), "outside"), []byte("not yours"), 0o400)
	t.Setenv("CREDENTIALS_DIRECTORY", dir)

	if pin, err := ReadString("edgev2.keyd.pin"); err != nil || pin != "1234" {
		t.Fatalf("ReadString: %q %v", pin, err)
	}
	for _, tc := range []struct {
		name, want string
		kind       fault.Kind
	}{
		{"edgev2.keyd.missing", "LoadCredentialEncrypted=edgev2.keyd.missing:/etc/credstore.encrypted/edgev2.keyd.missing", fault.NotFound},
		{"edgev2.keyd.empty", "empty", fault.InvalidArgs},
		{"edgev2.keyd.dir", "not a regular file", fault.InvalidArgs},
		{"../outside", "..", fault.InvalidArgs},
		{"..", "..", fault.InvalidArgs},
		{"x/../../outside", "/", fault.InvalidArgs},
	} {
		b, err := Read(tc.name)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !fault.Is(err, tc.kind) {
			t.Errorf("Read(%q) = %q, %v; want a %v error containing %q", tc.name, b, err, tc.kind, tc.want)
		}
	}
	_, err := Read("edgev2.keyd.missing")
	if !strings.Contains(err.Error(), "edgev2-keyd.service") || !strings.Contains(err.Error(), "50-credentials.conf") {
		t.Errorf("the missing credential's error does not name the unit and its drop-in: %v", err)
	}
}

func TestReadWithoutCredentialsDirectoryNamesTheUnitLine(t *testing.T) {
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	_, err := Read("edgev2.certd.est-password")
	if err == nil || !strings.Contains(err.Error(), "$CREDENTIALS_DIRECTORY is not set") ||
		!strings.Contains(err.Error(), "LoadCredentialEncrypted=edgev2.certd.est-password:/etc/credstore.encrypted/edgev2.certd.est-password") ||
		!strings.Contains(err.Error(), "edgev2-certd.service") {
		t.Fatalf("Read: %v", err)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", "relative/dir")
	if _, err := Read("edgev2.certd.est-password"); err == nil {
		t.Fatal("a relative $CREDENTIALS_DIRECTORY was used")
	}
}

func TestRefParsesCredentialReferences(t *testing.T) {
	if n, ok, err := Ref("credential:edgev2.keyd.pin"); n != "edgev2.keyd.pin" || !ok || err != nil {
		t.Errorf("Ref: %q %v %v", n, ok, err)
	}
	if _, ok, err := Ref("file:///etc/edgev2/pin"); ok || err != nil {
		t.Errorf("a file URI is a credential: %v %v", ok, err)
	}
	if _, ok, err := Ref("credential:../../etc/shadow"); !ok || err == nil {
		t.Errorf("a traversing credential name was accepted: %v %v", ok, err)
	}
}

func TestSealingReadsTheHeaderOfSystemdCredentials(t *testing.T) {
	// Headers as systemd-creds 252 writes them (base64 of the 16-byte id
	// and what follows); the first one is from `--with-key=host`.
	host := "Whxqht+dQJax1aZeCGLxmiAAAAABAAAADAAAABAAAAAA+1YXmJAd2pTwhJ4AAAAARCVECQC1697Ckt9\nqEIoL3DpH+EHApx+Fa3pBoPRMzevZcZp6mUn6fjrMBmZqknMOI2ZdTQmLF3ovKEsUNklT\n"
	if got := Sealing([]byte(host)); got != SealHost {
		t.Errorf("host credential: %q", got)
	}
	tpmHost := []byte{0x93, 0xa8, 0x94, 0x09, 0x48, 0x74, 0x44, 0x90, 0x90, 0xca, 0xf2, 0xfc, 0x93, 0xca, 0xb5, 0x53, 1, 2, 3}
	if got := Sealing(tpmHost); got != SealTPM2Host {
		t.Errorf("tpm2+host credential: %q", got)
	}
	for _, clear := range []string{"1234", "HostName=hub;DeviceId=x;SharedAccessKey=abc", ""} {
		if got := Sealing([]byte(clear)); got != "" {
			t.Errorf("clear %q read as sealed %q", clear, got)
		}
	}
}
