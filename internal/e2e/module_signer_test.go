package e2e_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/identity/adapter"
	idapi "github.com/edgev2/edgev2/identity/api"
	iclient "github.com/edgev2/edgev2/identity/client"
	idconfig "github.com/edgev2/edgev2/identity/config"
	"github.com/edgev2/edgev2/internal/testenv"
	kclient "github.com/edgev2/edgev2/keys/client"
	"github.com/edgev2/edgev2/modrt/workload"
)

// runtimeSource is modrtd's workload.SignerSource (cmd/edgev2-modrtd),
// over a connection that owns the Module Runtime's name.
type runtimeSource struct{ ids *iclient.Client }

func (s runtimeSource) OpenModuleSigner(ctx context.Context) (workload.SignerSession, string, error) {
	f, keyID, err := s.ids.OpenModuleSigner(ctx)
	if err != nil {
		return nil, "", err
	}
	sess, err := kclient.SessionFromFile(f)
	return sess, keyID, err
}

func (s runtimeSource) ModuleSigning(ctx context.Context, module string) ([]byte, []byte, error) {
	d, err := s.ids.ModuleSigning(ctx, module)
	if err != nil {
		return nil, nil, err
	}
	return d.Primary, d.Secondary, nil
}

func (s runtimeSource) SignAsModule(ctx context.Context, module, key string, data []byte) ([]byte, error) {
	return s.ids.SignAsModule(ctx, module, key, data)
}

// TestModuleSignerSignsLikeSignAsModuleForTheRuntimeOnly: the module
// signer identityd hands the Module Runtime signs byte for byte what
// SignAsModule signs (HMAC-SHA256 under the module's derived key,
// computed here from the exported key); no other caller, root included,
// gets it; a module re-created with a new generation is never signed for
// with the old one's cached derivation; and signing goes on after keyd
// restarts.
func TestModuleSignerSignsLikeSignAsModuleForTheRuntimeOnly(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	importKey(t, w, "dps-key", "sign", dpsKey)
	w.startIdentityd(t, "signer", fmt.Sprintf("[provisioning]\nsource = \"dps\"\nglobal_endpoint = \"https://%s\"\nid_scope = \"0ne00000042\"\n[provisioning.attestation]\nmethod = \"symmetric_key\"\nregistration_id = \"reg-sym\"\nsymmetric_key = \"dps-key\"\n", w.hubHost))
	w.waitState(t, "provisioned", 30*time.Second)
	if _, err := w.id.CreateModule(ctx, "sensor", ""); err != nil {
		t.Fatal(err)
	}
	// want is the module's token signature computed independently: the
	// module key exported from the master (as root may), HMAC here.
	want := func(key string, data []byte) []byte {
		t.Helper()
		m, err := w.id.Module(ctx, "sensor")
		if err != nil {
			t.Fatal(err)
		}
		k, err := w.keys.Key(idconfig.DefaultMasterKey).ExportDerived(ctx, []byte("sensor:"+m.GenerationID+":"+key))
		if err != nil {
			t.Fatal(err)
		}
		mac := hmac.New(sha256.New, k)
		mac.Write(data)
		return mac.Sum(nil)
	}

	// Not the runtime: root on the bus, and another uid, are refused.
	for who, c := range map[string]*godbus.Conn{"root": w.conn, testenv.OtherUser: w.bus.ConnAs(t, testenv.OtherUser)} {
		if f, _, err := iclient.New(c).OpenModuleSigner(ctx); !fault.Is(err, fault.NotAuthorized) {
			if f != nil {
				f.Close()
			}
			t.Fatalf("OpenModuleSigner by %s, not the runtime: %v; want NotAuthorized", who, err)
		}
		if _, err := iclient.New(c).ModuleSigning(ctx, "sensor"); !fault.Is(err, fault.NotAuthorized) {
			t.Fatalf("GetModuleSigning by %s, not the runtime: %v; want NotAuthorized", who, err)
		}
	}

	rt := w.bus.Conn(t)
	if reply, err := rt.RequestName(adapter.RuntimeBusName, godbus.NameFlagDoNotQueue); err != nil || reply != godbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("own %s: %v %v", adapter.RuntimeBusName, reply, err)
	}
	// identityd answers OpenModuleSigner itself (bus.FDReplier), not
	// godbus's method table: even the runtime's malformed calls get an
	// error and no descriptor.
	obj := rt.Object(idapi.BusName, idapi.ObjectPath)
	for what, args := range map[string][]any{
		"no arguments":      nil,
		"a string":          {"x"},
		"options and more":  {map[string]godbus.Variant{}, "x"},
		"an unknown option": {map[string]godbus.Variant{"key_id": godbus.MakeVariant("other")}},
	} {
		var fd godbus.UnixFD
		var info map[string]godbus.Variant
		if err := obj.CallWithContext(ctx, idapi.Interface+"."+idapi.MethodOpenModuleSigner, 0, args...).Store(&fd, &info); err == nil {
			t.Fatalf("OpenModuleSigner with %s handed out a descriptor", what)
		}
	}
	src := runtimeSource{iclient.New(rt)}
	signer := workload.NewModuleSigner(src, slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(signer.Close)
	check := func(step string) {
		t.Helper()
		direct := signer.SignedDirect()
		for _, key := range []string{"primary", "secondary"} {
			data := []byte("sensor-token-" + step + "-" + key)
			got, err := signer.SignAsModule(ctx, "sensor", key, data)
			if err != nil {
				t.Fatalf("%s: sign %s: %v", step, key, err)
			}
			old, err := w.id.SignAsModule(ctx, "sensor", key, data)
			if err != nil {
				t.Fatal(err)
			}
			if !hmac.Equal(got, want(key, data)) || !hmac.Equal(got, old) {
				t.Fatalf("%s: the module signer signed %x; SignAsModule %x; the module key %x", step, got, old, want(key, data))
			}
		}
		// The first call after a revocation may go through identityd; the
		// second goes over a new session.
		if signer.SignedDirect() == direct {
			t.Fatalf("%s: nothing was signed over the module signer", step)
		}
	}
	check("first")

	// Re-created: a new generation; the derivation the signer cached for
	// the old one must not be used.
	recreate := func() {
		t.Helper()
		before, _ := w.id.Module(ctx, "sensor")
		if err := w.id.DeleteModule(ctx, "sensor"); err != nil {
			t.Fatal(err)
		}
		if _, err := w.id.CreateModule(ctx, "sensor", ""); err != nil {
			t.Fatal(err)
		}
		if after, _ := w.id.Module(ctx, "sensor"); after.GenerationID == before.GenerationID {
			t.Fatalf("the re-created module kept generation %q", before.GenerationID)
		}
	}
	recreate()
	check("re-created")

	// The fd itself: SignDerived on the master only, revoked by the next
	// change of module identities.
	f, keyID, err := src.ids.OpenModuleSigner(ctx)
	if err != nil {
		t.Fatalf("OpenModuleSigner by the runtime: %v", err)
	}
	sess, err := kclient.SessionFromFile(f)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if keyID != idconfig.DefaultMasterKey {
		t.Fatalf("the module signer is for key %q, want %q", keyID, idconfig.DefaultMasterKey)
	}
	if _, err := sess.SignDerived(ctx, keyID, []byte("d"), []byte("x")); err != nil {
		t.Fatalf("SignDerived on the master over the module signer: %v", err)
	}
	if _, err := sess.SignDerived(ctx, "dps-key", []byte("x"), []byte("y")); !fault.Is(err, fault.NotAuthorized) {
		t.Fatalf("SignDerived on another key over the module signer: %v; want AccessDenied (NotAuthorized)", err)
	}
	recreate()
	if _, err := sess.SignDerived(ctx, keyID, []byte("d"), []byte("x")); err == nil {
		t.Fatal("a module signer handed out before the module was re-created still signs")
	}
	check("handed out again")

	// keyd restarts: the session dies, the signer falls back and reopens.
	w.keyd.Restart(t)
	check("keyd restarted")
}
