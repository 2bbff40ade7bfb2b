package tpm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/edgev2/edgev2/internal/testenv"
)

func TestEKCertificateVerifiesAgainstTheMakersCA(t *testing.T) {
	sw := testenv.StartSwtpm(t)
	for _, alg := range []string{"rsa", "ecc"} {
		t.Run(alg, func(t *testing.T) {
			out := mustTPM(t, sw, "ek", "verify", "--ca", sw.MakerCAFile, "--alg", alg)
			for _, want := range []string{"tpm-manufacturer: id:00001014", "tpm-model: swtpm", "verified: chain of 3", "this TPM's EK"} {
				if !strings.Contains(out, want) {
					t.Errorf("ek verify output lacks %q:\n%s", want, out)
				}
			}
		})
	}
	t.Run("OtherMakersCARefused", func(t *testing.T) {
		other := newFactoryCA(t, "Some Other TPM Maker")
		_, errw, code := runTPM(t, sw, "ek", "verify", "--ca", other.file)
		if code != 1 || !strings.Contains(errw, "does not chain to the maker's CA bundle") {
			t.Fatalf("exit %d, stderr %q; want 1 and a chain error", code, errw)
		}
	})
	t.Run("MissingCAIsUsage", func(t *testing.T) {
		_, errw, code := runTPM(t, sw, "ek", "verify")
		if code != 2 || !strings.Contains(errw, "--ca FILE") {
			t.Fatalf("exit %d, stderr %q", code, errw)
		}
	})
}

func TestIDevIDIsCreatedOnceAndReplacedOnlyWithForce(t *testing.T) {
	sw := testenv.StartSwtpm(t)
	first := mustTPM(t, sw, "idevid", "create")
	if !strings.Contains(first, "idevid 0x81020000: created") {
		t.Fatalf("first create: %s", first)
	}
	again := mustTPM(t, sw, "idevid", "create")
	if !strings.Contains(again, "exists") || fp(again) != fp(first) {
		t.Fatalf("second create did not keep the key:\n%s\n%s", first, again)
	}
	forced := mustTPM(t, sw, "idevid", "create", "--force", "--alg", "rsa")
	if !strings.Contains(forced, "created") || fp(forced) == fp(first) {
		t.Fatalf("--force did not make a new key:\n%s\n%s", first, forced)
	}
	tp := openTPM(t, sw, Config{})
	defer tp.Close()
	id, err := tp.IDevID(ctxT(t))
	if err != nil || id.Alg != AlgRSA2048 {
		t.Fatalf("IDevID after --force --alg rsa = %+v, %v", id, err)
	}
	rsp, err := tpm2.ReadPublic{ObjectHandle: IDevIDHandle}.Execute(tp.t)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := rsp.OutPublic.Contents()
	a := pub.ObjectAttributes
	if !a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin || !a.UserWithAuth || !a.SignEncrypt || a.Restricted || a.Decrypt {
		t.Fatalf("IDevID attributes %+v are not fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|sign", a)
	}
}

func fp(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, "public-key-sha256: "); ok {
			return v
		}
	}
	return ""
}

func TestIDevIDCertificateIsStoredInNVAndExported(t *testing.T) {
	sw := testenv.StartSwtpm(t)
	factory := newFactoryCA(t, "Device Maker IDevID CA")
	mustTPM(t, sw, "idevid", "create")
	csr := mustTPM(t, sw, "idevid", "csr", "--cn", "device-42", "--serial", "SN-0042")
	certFile := factory.certify(t, csr)

	if out := mustTPM(t, sw, "idevid", "set-cert", certFile); !strings.Contains(out, "NV 0x01c90000") {
		t.Fatalf("set-cert: %s", out)
	}
	exported := mustTPM(t, sw, "idevid", "export", "--cert")
	want, _ := os.ReadFile(certFile)
	if exported != string(want) {
		t.Fatalf("exported certificate differs from the one stored:\n%s\nwant\n%s", exported, want)
	}
	show := mustTPM(t, sw, "idevid", "show")
	if !strings.Contains(show, `subject "SERIALNUMBER=SN-0042,CN=device-42"`) || !strings.Contains(show, "9999-12-31T23:59:59Z") {
		t.Fatalf("show: %s", show)
	}
	pubOut := filepath.Join(t.TempDir(), "idevid.pub.pem")
	mustTPM(t, sw, "idevid", "export", "--out", pubOut)
	pubPEM, _ := os.ReadFile(pubOut)
	blk, _ := pem.Decode(pubPEM)
	cert, _ := x509.ParseCertificate(mustPEM(t, want))
	if pub, err := x509.ParsePKIXPublicKey(blk.Bytes); err != nil || !samePublic(pub, cert.PublicKey) {
		t.Fatalf("exported public key is not the certificate's: %v", err)
	}

	t.Run("SecondCertRefusedWithoutForce", func(t *testing.T) {
		again := factory.certify(t, csr)
		_, errw, code := runTPM(t, sw, "idevid", "set-cert", again)
		if code != 1 || !strings.Contains(errw, "--force") {
			t.Fatalf("exit %d, stderr %q", code, errw)
		}
		mustTPM(t, sw, "idevid", "set-cert", again, "--force")
		if got := mustTPM(t, sw, "idevid", "export", "--cert"); got == string(want) {
			t.Fatalf("--force did not replace the certificate")
		}
	})
	t.Run("CertificateForAnotherKeyRefused", func(t *testing.T) {
		other := newFactoryCA(t, "not the idevid")
		_, errw, code := runTPM(t, sw, "idevid", "set-cert", other.file, "--force")
		if code != 1 || !strings.Contains(errw, "public key differs") {
			t.Fatalf("exit %d, stderr %q", code, errw)
		}
	})
}

func mustPEM(t *testing.T, b []byte) []byte {
	t.Helper()
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("no PEM in %q", b)
	}
	return blk.Bytes
}

func TestLDevIDUnderTheSRKWithItsBlobs(t *testing.T) {
	sw := testenv.StartSwtpm(t)
	blobs := filepath.Join(t.TempDir(), "tpm")
	out := mustTPM(t, sw, "ldevid", "create", "--blobs", blobs)
	if !strings.Contains(out, "ldevid 0x81000002: created") {
		t.Fatalf("ldevid create: %s", out)
	}
	for _, name := range []string{"ldevid.pub", "ldevid.priv"} {
		st, err := os.Stat(filepath.Join(blobs, name))
		if err != nil || st.Mode().Perm() != 0o600 || st.Size() == 0 {
			t.Fatalf("%s: %v %v", name, st, err)
		}
	}
	status := mustTPM(t, sw, "status")
	for _, want := range []string{"srk 0x81000001: present", "ldevid 0x81000002: present", "idevid 0x81020000: absent", "lockout: false"} {
		if !strings.Contains(status, want) {
			t.Errorf("status lacks %q:\n%s", want, status)
		}
	}
	// The blobs load under the SRK and are the persistent key.
	tp := openTPM(t, sw, Config{})
	defer tp.Close()
	pubBlob, _ := os.ReadFile(filepath.Join(blobs, "ldevid.pub"))
	privBlob, _ := os.ReadFile(filepath.Join(blobs, "ldevid.priv"))
	inPub, err := tpm2.Unmarshal[tpm2.TPM2BPublic](pubBlob)
	if err != nil {
		t.Fatal(err)
	}
	inPriv, err := tpm2.Unmarshal[tpm2.TPM2BPrivate](privBlob)
	if err != nil {
		t.Fatal(err)
	}
	srk, _, _ := tp.readPublic(SRKHandle)
	srkName := srk.Name
	lrsp, err := tpm2.Load{ParentHandle: tpm2.AuthHandle{Handle: SRKHandle, Name: srkName, Auth: tpm2.PasswordAuth(nil)}, InPrivate: *inPriv, InPublic: *inPub}.Execute(tp.t)
	if err != nil {
		t.Fatalf("the LDevID blobs do not load under the SRK: %v", err)
	}
	tp.flush(lrsp.ObjectHandle)
	persistent, _, _ := tp.readPublic(LDevIDHandle)
	persistentName := persistent.Name
	if string(persistentName.Buffer) != string(lrsp.Name.Buffer) {
		t.Fatalf("the blobs are not the key at 0x81000002")
	}
	if again := mustTPMWith(t, sw, tp, "ldevid", "create", "--blobs", blobs); !strings.Contains(again, "exists") {
		t.Fatalf("second ldevid create: %s", again)
	}
}

// mustTPMWith closes tp (swtpm serves one client) before running Main.
func mustTPMWith(t *testing.T, sw *testenv.Swtpm, tp *TPM, args ...string) string {
	t.Helper()
	tp.Close()
	return mustTPM(t, sw, args...)
}

func TestTPMSignerSignaturesVerify(t *testing.T) {
	sw := testenv.StartSwtpm(t)
	tp := openTPM(t, sw, Config{})
	defer tp.Close()
	ctx := ctxT(t)
	digest := sha256.Sum256([]byte("signed in the TPM"))
	for _, alg := range []KeyAlg{AlgECCP256, AlgRSA2048} {
		t.Run(string(alg), func(t *testing.T) {
			if _, _, err := tp.CreateIDevID(ctx, alg, true); err != nil {
				t.Fatal(err)
			}
			s, err := tp.Signer(ctx, IDevIDHandle)
			if err != nil {
				t.Fatal(err)
			}
			switch pub := s.Public().(type) {
			case *ecdsa.PublicKey:
				sig, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
				if err != nil || !ecdsa.VerifyASN1(pub, digest[:], sig) {
					t.Fatalf("ECDSA signature does not verify: %v", err)
				}
			case *rsa.PublicKey:
				sig, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
				if err != nil || rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig) != nil {
					t.Fatalf("PKCS#1 v1.5 signature does not verify: %v", err)
				}
				opts := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
				sig, err = s.Sign(rand.Reader, digest[:], opts)
				if err != nil || rsa.VerifyPSS(pub, crypto.SHA256, digest[:], sig, opts) != nil {
					t.Fatalf("PSS signature does not verify with salt = hash length: %v", err)
				}
			default:
				t.Fatalf("public key %T", pub)
			}
			if _, err := s.Sign(rand.Reader, digest[:16], crypto.SHA256); err == nil {
				t.Fatalf("a short digest was signed")
			}
		})
	}
}

func TestTPMFaultsNameTheFix(t *testing.T) {
	t.Run("Absent", func(t *testing.T) {
		for _, c := range []struct {
			args []string
			want []string
		}{
			{[]string{"--address", "127.0.0.1:1", "status"}, []string{"TPM at 127.0.0.1:1 is absent", "connection refused", "swtpm socket"}},
			{[]string{"--device", "/dev/no-such-tpm", "status"}, []string{"TPM /dev/no-such-tpm is absent", "enable the TPM 2.0 in the firmware"}},
		} {
			var out, errw strings.Builder
			code := Main(ctxT(t), c.args, &out, &errw)
			for _, w := range c.want {
				if code != 1 || !strings.Contains(errw.String(), w) {
					t.Errorf("%v: exit %d, stderr %q; want %q", c.args, code, errw.String(), w)
				}
			}
		}
	})

	t.Run("WrongEndorsementAuth", func(t *testing.T) {
		sw := testenv.StartSwtpm(t)
		secret := "eh-" + strings.Repeat("7", 12)
		tp := openTPM(t, sw, Config{})
		if _, err := (tpm2.HierarchyChangeAuth{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(nil)},
			NewAuth:    tpm2.TPM2BAuth{Buffer: []byte(secret)},
		}).Execute(tp.t); err != nil {
			t.Fatal(err)
		}
		tp.Close()
		_, errw, code := runTPM(t, sw, "idevid", "create")
		for _, w := range []string{"endorsement hierarchy's authorization", "TPM_RC_BAD_AUTH", "--endorsement-auth-file"} {
			if code != 1 || !strings.Contains(errw, w) {
				t.Errorf("exit %d, stderr %q; want %q", code, errw, w)
			}
		}
		wrong := filepath.Join(t.TempDir(), "eh-wrong")
		os.WriteFile(wrong, []byte("not-it-"+secret+"\n"), 0o600)
		_, errw, _ = runTPM(t, sw, "--endorsement-auth-file", wrong, "idevid", "create")
		if strings.Contains(errw, secret) {
			t.Fatalf("an auth value reached the error: %q", errw)
		}
		good := filepath.Join(t.TempDir(), "eh")
		os.WriteFile(good, []byte(secret+"\n"), 0o600)
		if out := mustTPM(t, sw, "--endorsement-auth-file", good, "idevid", "create"); !strings.Contains(out, "created") {
			t.Fatalf("with the auth file: %s", out)
		}
		tp = openTPM(t, sw, Config{EndorsementAuth: []byte("wrong")})
		defer tp.Close()
		if _, _, err := tp.CreateIDevID(ctxT(t), AlgECCP256, true); !errors.Is(err, ErrBadAuth) {
			t.Fatalf("CreateIDevID with a wrong endorsement auth = %v; want ErrBadAuth", err)
		}
	})

	t.Run("WrongOwnerAuth", func(t *testing.T) {
		sw := testenv.StartSwtpm(t)
		tp := openTPM(t, sw, Config{})
		if _, err := (tpm2.HierarchyChangeAuth{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
			NewAuth:    tpm2.TPM2BAuth{Buffer: []byte("owner-secret")},
		}).Execute(tp.t); err != nil {
			t.Fatal(err)
		}
		tp.Close()
		_, errw, code := runTPM(t, sw, "ldevid", "create", "--blobs", t.TempDir())
		for _, w := range []string{"owner hierarchy's authorization", "--owner-auth-file", "tpm2_changeauth -c o"} {
			if code != 1 || !strings.Contains(errw, w) {
				t.Errorf("exit %d, stderr %q; want %q", code, errw, w)
			}
		}
		good := filepath.Join(t.TempDir(), "owner")
		os.WriteFile(good, []byte("owner-secret"), 0o600)
		if out := mustTPM(t, sw, "--owner-auth-file", good, "ldevid", "create", "--blobs", t.TempDir()); !strings.Contains(out, "created") {
			t.Fatalf("with the owner auth file: %s", out)
		}
	})

	t.Run("Lockout", func(t *testing.T) {
		sw := testenv.StartSwtpm(t)
		mustTPM(t, sw, "idevid", "create")
		tp := openTPM(t, sw, Config{})
		setDictionaryAttack(t, tp, 2, 1000, 1000)
		s, err := tp.Signer(ctxT(t), IDevIDHandle)
		if err != nil {
			t.Fatal(err)
		}
		s.auth = []byte("a wrong guess")
		digest := sha256.Sum256([]byte("x"))
		var lastErr error
		for i := 0; i < 3; i++ {
			_, lastErr = s.Sign(rand.Reader, digest[:], crypto.SHA256)
		}
		if !errors.Is(lastErr, ErrLockout) {
			t.Fatalf("after 3 wrong auths with max tries 2: %v; want ErrLockout", lastErr)
		}
		tp.Close()
		_, errw, code := runTPM(t, sw, "idevid", "csr", "--cn", "device-42")
		for _, w := range []string{"TPM_RC_LOCKOUT", "tpm2_dictionarylockout --clear-lockout", "recovery time"} {
			if code != 1 || !strings.Contains(errw, w) {
				t.Errorf("exit %d, stderr %q; want %q", code, errw, w)
			}
		}
		if st := mustTPM(t, sw, "status"); !strings.Contains(st, "lockout: true") {
			t.Errorf("status does not show the lockout:\n%s", st)
		}
	})
}

func TestUsageErrorsExitTwo(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"idevid"},
		{"idevid", "create", "--alg", "dsa"},
		{"idevid", "csr"},
		{"idevid", "set-cert"},
		{"--device", "/dev/tpmrm0", "--address", "127.0.0.1:1", "status"},
	} {
		var out, errw strings.Builder
		if code := Main(ctxT(t), args, &out, &errw); code != 2 {
			t.Errorf("%q: exit %d, want 2; stderr %q", args, code, errw.String())
		}
	}
}
