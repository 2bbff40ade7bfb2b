package adapter_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/keys"
	"github.com/edgev2/edgev2/keys/api"
	"github.com/edgev2/edgev2/keys/client"
)

// tpmKeyd is keyd with its PKCS#11 engine on tpm2-pkcs11, whose token
// lives in a swtpm reached through tpm2-abrmd.
type tpmKeyd struct {
	tok  *testenv.TPM2PKCS11Token
	svc  *testenv.Service
	keys *client.Client
}

// startTPMKeyd makes a TPM key at persistentHandle with tpm2-tools,
// links it into the token as preloaded (the way an LDevID gets there),
// and starts keyd on the token with it in [preloaded_keys].
func startTPMKeyd(t *testing.T, linkedLabel, persistentHandle string) *tpmKeyd {
	t.Helper()
	testenv.RequireRoot(t)
	uid, gid := testenv.EnsureUser(t, testenv.ServiceUser)
	bus := testenv.StartBus(t)
	testenv.StartPolkit(t, bus)
	sw := testenv.StartSwtpm(t)
	tok := testenv.NewTPM2PKCS11Token(t, sw, "edgev2-tpm", uid, gid, testenv.TPM2PKCS11Options{})

	// A signing key under the store's primary (0x81000001), persisted, and
	// linked from its blobs: tpm2-pkcs11 loads it under the same parent.
	dir := t.TempDir()
	pub, priv, ctx := filepath.Join(dir, "key.pub"), filepath.Join(dir, "key.priv"), filepath.Join(dir, "key.ctx")
	b := tok.Broker
	b.Tool(t, "tpm2_create", "-C", "0x81000001", "-G", "ecc256:null", "-a", "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign", "-u", pub, "-r", priv)
	b.Tool(t, "tpm2_load", "-C", "0x81000001", "-u", pub, "-r", priv, "-c", ctx)
	b.Tool(t, "tpm2_evictcontrol", "-C", "o", "-c", ctx, persistentHandle)
	b.Tool(t, "tpm2_flushcontext", "-t")
	tok.Ptool(t, "link", "--label", tok.Label, "--userpin", tok.PIN, "--key-label", linkedLabel, "--path", tok.Store, pub, priv)
	// An HMAC key made in the TPM by tpm2_ptool (tpm2-pkcs11 cannot
	// generate one through PKCS#11): it is CKK_SHA256_HMAC, not generic secret.
	tok.Ptool(t, "addkey", "--algorithm", "hmac:sha256", "--label", tok.Label, "--userpin", tok.PIN, "--key-label", "tpm-hmac", "--path", tok.Store)

	home := testenv.SharedTempDir(t, "keyd-tpm")
	os.Chown(home, uid, gid)
	cfg := fmt.Sprintf("homedir = %q\npkcs11_lib_path = %q\npkcs11_base_slot = %q\n\n[preloaded_keys]\n%q = %q\ntpm-hmac = %q\n",
		home, tok.LibPath, tok.URI(), linkedLabel,
		"pkcs11:token="+tok.Label+";object="+linkedLabel+"?pin-value="+tok.PIN,
		"pkcs11:token="+tok.Label+";object=tpm-hmac?pin-value="+tok.PIN)
	cfgPath := filepath.Join(home, "keyd.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chown(cfgPath, uid, gid)
	svc := testenv.StartService(t, bus, testenv.ServiceOptions{
		Binary:  testenv.BuildBinary(t, "./cmd/edgev2-keyd"),
		Args:    []string{"--config", cfgPath, "--log-level", "debug"},
		User:    testenv.ServiceUser,
		Env:     tok.Env(),
		BusName: api.BusName,
	})
	return &tpmKeyd{tok: tok, svc: svc, keys: client.New(bus.Conn(t))}
}

// opensslVerifies signs data with key through the bus for each mechanism
// and has openssl verify every signature with the key's public key.
func opensslVerifies(t *testing.T, key *client.Key, mechs ...string) {
	t.Helper()
	ctx := ctxT(t)
	props, err := key.Properties(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pubPath := writePublicPEM(t, props.PublicKeyDER)
	dir := t.TempDir()
	data := []byte("signed inside the TPM")
	dataPath := filepath.Join(dir, "data")
	os.WriteFile(dataPath, data, 0o600)
	digest := sha256.Sum256(data)
	digestPath := filepath.Join(dir, "digest")
	os.WriteFile(digestPath, digest[:], 0o600)
	for _, mech := range mechs {
		in := data
		if mech == keys.MechECDSA {
			in = digest[:]
		}
		sig, err := key.Sign(ctx, mech, in)
		if err != nil {
			t.Fatalf("Sign %s with %s: %v", mech, props.ID, err)
		}
		sigPath := filepath.Join(dir, "sig-"+mech)
		os.WriteFile(sigPath, sig, 0o600)
		var args []string
		switch mech {
		case keys.MechECDSA:
			args = []string{"pkeyutl", "-verify", "-pubin", "-inkey", pubPath, "-in", digestPath, "-sigfile", sigPath}
		case keys.MechRSAPSSSHA256:
			args = []string{"dgst", "-sha256", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32", "-verify", pubPath, "-signature", sigPath, dataPath}
		default:
			args = []string{"dgst", "-sha256", "-verify", pubPath, "-signature", sigPath, dataPath}
		}
		if out := openssl(t, args...); !strings.Contains(out, "Verified OK") && !strings.Contains(out, "Verified Successfully") {
			t.Fatalf("openssl did not verify the %s signature of %s: %s", mech, props.ID, out)
		}
	}
}

func TestTPMKeysSignThroughTheBusAndVerifyWithOpenSSL(t *testing.T) {
	k := startTPMKeyd(t, "ldevid", "0x81000002")
	ctx := ctxT(t)
	if got, err := k.keys.Engine(ctx); err != nil || got != "pkcs11" {
		t.Fatalf("Engine = %q, %v; want pkcs11", got, err)
	}

	t.Run("GeneratedInTheTPM", func(t *testing.T) {
		for _, c := range []struct {
			typ   string
			mechs []string
		}{
			{"ec-p256", []string{keys.MechECDSASHA256, keys.MechECDSA}},
			{"rsa-2048", []string{keys.MechRSAPKCS1SHA256, keys.MechRSAPSSSHA256}},
		} {
			t.Run(c.typ, func(t *testing.T) {
				key, err := k.keys.CreateKeyPair(ctx, "tpm-"+c.typ, c.typ)
				if err != nil {
					t.Fatalf("CreateKeyPair %s on tpm2-pkcs11: %v", c.typ, err)
				}
				props, err := key.Properties(ctx)
				if err != nil || props.Type != c.typ || !strings.HasPrefix(props.Location, "pkcs11:token=edgev2-tpm") {
					t.Fatalf("properties = %+v, %v", props, err)
				}
				opensslVerifies(t, key, c.mechs...)
			})
		}
		// The generated keys live in the store's sqlite, as TPM-wrapped blobs.
		out := k.tok.Ptool(t, "listobjects", "--label", k.tok.Label, "--path", k.tok.Store)
		for _, id := range []string{"tpm-ec-p256", "tpm-rsa-2048"} {
			if !strings.Contains(out, id) {
				t.Fatalf("tpm2_ptool listobjects does not list %s:\n%s", id, out)
			}
		}
	})

	t.Run("LinkedFromPersistentHandleIsPreloadedAndSigns", func(t *testing.T) {
		key, err := k.keys.GetKey(ctx, "ldevid")
		if err != nil {
			t.Fatalf("GetKey ldevid: %v", err)
		}
		props, err := key.Properties(ctx)
		if err != nil || !props.Preloaded || props.Type != "ec-p256" || strings.Contains(props.Location, k.tok.PIN) {
			t.Fatalf("properties = %+v, %v", props, err)
		}
		// Same key as the one at the persistent handle.
		pemPath := filepath.Join(t.TempDir(), "persistent.pem")
		k.tok.Broker.Tool(t, "tpm2_readpublic", "-c", "0x81000002", "-f", "pem", "-o", pemPath)
		data, _ := os.ReadFile(pemPath)
		blk, _ := pem.Decode(data)
		if blk == nil {
			t.Fatalf("tpm2_readpublic wrote no PEM: %q", data)
		}
		if _, err := x509.ParsePKIXPublicKey(blk.Bytes); err != nil {
			t.Fatalf("parse public key of 0x81000002: %v", err)
		}
		if !bytes.Equal(blk.Bytes, props.PublicKeyDER) {
			t.Fatalf("keyd's ldevid public key differs from the key at 0x81000002")
		}
		opensslVerifies(t, key, keys.MechECDSASHA256, keys.MechECDSA)
	})

	t.Run("HMACKeyFromTPM2PtoolSigns", func(t *testing.T) {
		key, err := k.keys.GetKey(ctx, "tpm-hmac")
		if err != nil {
			t.Fatalf("GetKey tpm-hmac (CKK_SHA256_HMAC): %v", err)
		}
		mac, err := key.Sign(ctx, keys.MechHMACSHA256, []byte("device-42"))
		if err != nil || len(mac) != 32 {
			t.Fatalf("HMAC-SHA256 in the TPM = %x, %v", mac, err)
		}
		again, _ := key.Sign(ctx, keys.MechHMACSHA256, []byte("device-42"))
		other, _ := key.Sign(ctx, keys.MechHMACSHA256, []byte("device-43"))
		if !bytes.Equal(mac, again) || bytes.Equal(mac, other) {
			t.Fatalf("HMAC is not a function of the data: %x %x %x", mac, again, other)
		}
		if ok, err := key.Verify(ctx, keys.MechHMACSHA256, []byte("device-42"), mac); err != nil || !ok {
			t.Fatalf("Verify = %v, %v", ok, err)
		}
		if ok, _ := key.Verify(ctx, keys.MechHMACSHA256, []byte("device-43"), mac); ok {
			t.Fatal("Verify accepted the MAC for other data")
		}
	})

	if out := k.svc.Output(); strings.Contains(out, k.tok.PIN) {
		t.Fatalf("keyd logged the token PIN")
	}
}
