package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"

	idconfig "github.com/edgev2/edgev2/identity/config"
	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/internal/tpm"
	"github.com/edgev2/edgev2/internal/tpm/ek"
)

// checkTPMWith runs the TPM check on an identityd.toml naming sw.
func checkTPMWith(t *testing.T, sw *testenv.Swtpm, extra string) checkResult {
	t.Helper()
	path := filepath.Join(t.TempDir(), "identityd.toml")
	text := "homedir = \"/h\"\n[provisioning]\nsource = \"dps\"\nid_scope = \"0ne00000001\"\n[provisioning.attestation]\nmethod = \"tpm\"\n[tpm]\naddress = \"" + sw.Addr + "\"\n" + extra
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := idconfig.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	k := &checker{cfg: deviceConfigs{identityd: cfg}}
	k.checkTPM(context.Background())
	if len(k.results) != 1 || k.results[0].Name != "tpm.registration-id" {
		t.Fatalf("TPM check results %+v", k.results)
	}
	return k.results[0]
}

// withTPM runs fn on a direct connection to sw, closed before check runs
// (swtpm serves one client at a time).
func withTPM(t *testing.T, sw *testenv.Swtpm, fn func(*tpm.TPM)) {
	t.Helper()
	tp, err := tpm.Open(context.Background(), tpm.Config{Address: sw.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	fn(tp)
}

func TestCheckWarnsWhenTheRegistrationIDWouldChange(t *testing.T) {
	testenv.RequireRoot(t)
	sw := testenv.StartSwtpm(t)
	var id, azureID string
	withTPM(t, sw, func(tp *tpm.TPM) {
		st, err := tp.EKStatus(context.Background(), ek.Auto, false)
		if err != nil {
			t.Fatal(err)
		}
		id = st.ID
	})

	r := checkTPMWith(t, sw, "")
	if r.Status != statusOK || !strings.Contains(r.Message, id) || !strings.Contains(r.Message, "0x81010001") {
		t.Fatalf("persisted certified EK: %+v; want ok naming id %s", r, id)
	}

	evictEK(t, sw)
	r = checkTPMWith(t, sw, "")
	if r.Status != statusWarning || !strings.Contains(r.Message, "no EK is persisted") || !strings.Contains(r.Message, "Azure IoT SDK") || !strings.Contains(r.Fix, "edgectl tpm ek --persist") {
		t.Fatalf("transient EK: %+v; want a warning that an Azure SDK tool would change the id", r)
	}

	// What an Azure SDK tool leaves behind: its own EK at 0x81010001.
	withTPM(t, sw, func(tp *tpm.TPM) {
		st, err := tp.EKStatus(context.Background(), ek.AzureSDK, true)
		if err != nil || !st.Key.Persisted {
			t.Fatalf("persist the azure-sdk EK: %v %+v", err, st)
		}
		azureID = st.ID
	})
	r = checkTPMWith(t, sw, "")
	if r.Status != statusWarning || !strings.Contains(r.Message, "not the key of the TPM's EK certificate") || !strings.Contains(r.Message, azureID) ||
		!strings.Contains(r.Message, id) || !strings.Contains(r.Fix, "tpm2_evictcontrol -C o -c 0x81010001") {
		t.Fatalf("persisted azure-sdk EK: %+v; want a warning naming both ids", r)
	}
	// A fleet enrolled with Azure's tooling says so: settled.
	r = checkTPMWith(t, sw, "ek_template = \"azure-sdk\"\n")
	if r.Status != statusOK || !strings.Contains(r.Message, azureID) {
		t.Fatalf("persisted azure-sdk EK with ek_template = azure-sdk: %+v; want ok", r)
	}
	r = checkTPMWith(t, sw, "ek_template = \"tcg\"\n")
	if r.Status != statusWarning || !strings.Contains(r.Message, `ek_template = "tcg" has no effect`) {
		t.Fatalf("persisted azure-sdk EK with ek_template = tcg: %+v; want a warning", r)
	}
}

func evictEK(t *testing.T, sw *testenv.Swtpm) {
	t.Helper()
	tr, err := tpm.OpenTransport(context.Background(), "", sw.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	rp, err := tpm2.ReadPublic{ObjectHandle: ek.Handle}.Execute(tr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (tpm2.EvictControl{Auth: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		ObjectHandle: tpm2.NamedHandle{Handle: ek.Handle, Name: rp.Name}, PersistentHandle: ek.Handle}).Execute(tr); err != nil {
		t.Fatal(err)
	}
}
