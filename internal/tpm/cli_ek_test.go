package tpm

import (
	"crypto/sha256"
	"encoding/base32"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/edgev2/edgev2/internal/testenv"
)

// persistedEKID reads 0x81010001 and derives the id as the SDKs do.
func persistedEKID(t *testing.T, sw *testenv.Swtpm) string {
	t.Helper()
	tp := openTPM(t, sw, Config{})
	defer tp.Close()
	rp, err := tpm2.ReadPublic{ObjectHandle: RSAEKHandle}.Execute(tp.t)
	if err != nil {
		t.Fatalf("read 0x81010001: %v", err)
	}
	sum := sha256.Sum256(tpm2.Marshal(rp.OutPublic))
	return strings.ToLower(strings.TrimRight(base32.StdEncoding.EncodeToString(sum[:]), "="))
}

func evictPersistedEK(t *testing.T, sw *testenv.Swtpm) {
	t.Helper()
	tp := openTPM(t, sw, Config{})
	defer tp.Close()
	rp, err := tpm2.ReadPublic{ObjectHandle: RSAEKHandle}.Execute(tp.t)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (tpm2.EvictControl{Auth: tp.owner(), ObjectHandle: tpm2.NamedHandle{Handle: RSAEKHandle, Name: rp.Name}, PersistentHandle: RSAEKHandle}).Execute(tp.t); err != nil {
		t.Fatal(err)
	}
}

func wantLines(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Fatalf("edgectl tpm ek printed:\n%s\nwant it to contain %q", out, w)
		}
	}
}

func TestEKCommandPrintsTheRegistrationIDItsTemplateAndHandle(t *testing.T) {
	testenv.RequireRoot(t)
	sw := testenv.StartSwtpm(t)
	id := persistedEKID(t, sw)

	out := mustTPM(t, sw, "ek")
	wantLines(t, out, "registration-id: "+id+"\n", "ek-handle: 0x81010001 (persistent)", "ek-template: tcg\n", "ek-certificate: NV 0x01c00002 certifies this EK")
	if strings.Contains(out, "warning") {
		t.Fatalf("a persisted, certified EK is settled; got:\n%s", out)
	}

	evictPersistedEK(t, sw)
	out = mustTPM(t, sw, "ek")
	wantLines(t, out, "registration-id: "+id+"\n", "ek-handle: transient", "ek-template: tcg (chosen by the EK certificate)",
		"warning: no EK is persisted at 0x81010001", "Azure IoT SDK", "fix: persist it now: edgectl tpm ek --persist")

	out = mustTPM(t, sw, "ek", "--template", "azure-sdk")
	if strings.Contains(out, "registration-id: "+id) {
		t.Fatalf("the azure-sdk template gave the TCG EK:\n%s", out)
	}
	wantLines(t, out, "ek-template: azure-sdk", "certifies another key (registration id "+id+")", "--persist --template azure-sdk")

	out = mustTPM(t, sw, "ek", "--persist")
	wantLines(t, out, "registration-id: "+id+"\n", "ek-handle: 0x81010001 (persisted now)")
	if strings.Contains(out, "warning") {
		t.Fatalf("after --persist:\n%s", out)
	}
	if got := persistedEKID(t, sw); got != id {
		t.Fatalf("0x81010001 holds %s after --persist; want %s", got, id)
	}
	out = mustTPM(t, sw, "ek", "--template", "azure-sdk")
	wantLines(t, out, "registration-id: "+id+"\n", `ek_template = "azure-sdk" has no effect`)

	if _, errw, code := runTPM(t, sw, "ek", "--template", "tss"); code != 2 || !strings.Contains(errw, "azure-sdk") {
		t.Fatalf("bad --template: exit %d, %s", code, errw)
	}
}
