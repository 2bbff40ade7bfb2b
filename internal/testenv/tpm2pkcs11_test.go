package testenv

import (
	"strings"
	"testing"
)

func TestTPM2PKCS11TokenIsListedByItsStore(t *testing.T) {
	RequireRoot(t)
	sw := StartSwtpm(t)
	tok := NewTPM2PKCS11Token(t, sw, "edgev2-tpm", 0, 0, TPM2PKCS11Options{})
	out := tok.Ptool(t, "listtokens", "--pid", "1", "--path", tok.Store)
	if !strings.Contains(out, "edgev2-tpm") {
		t.Fatalf("tpm2_ptool listtokens does not list the token:\n%s", out)
	}
	if handles := tok.Broker.Tool(t, "tpm2_getcap", "handles-persistent"); !strings.Contains(handles, "0x81000001") {
		t.Fatalf("no persistent primary at 0x81000001 after init:\n%s", handles)
	}
	tok.Broker.Stop()
	conn, err := sw.Dial()
	if err != nil {
		t.Fatalf("swtpm is not reachable after the broker stopped: %v", err)
	}
	conn.Close()
}
