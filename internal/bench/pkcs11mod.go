package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/keys"
	"github.com/edgev2/edgev2/keys/client"
)

// pkcs11modRows measures C_Sign (CKM_ECDSA, P-256, on a SHA-256 digest)
// through libedgev2-pkcs11.so — which forwards to keyd over the bus, keyd
// signing on a SoftHSM token — beside the same key on the same token reached
// through p11-kit's RPC (`p11-kit server` + p11-kit-client.so), at 1 and 8
// threads, each thread with its own session. keyd runs on its own private
// bus; the caller is root, so polkit is not on the path (uid 0 is allowed
// before any polkit check; a polkit-authorised uid pays one check per
// connection, cached afterwards).
func pkcs11modRows(p *testenv.Program, keydBin, dir string) ([]row, error) {
	uid, gid := testenv.EnsureUser(p, testenv.ServiceUser)
	b := testenv.StartBus(p)
	tok := testenv.NewSoftHSMToken(p, "edgev2-bench-p11mod", uid, gid)
	home := filepath.Join(dir, "p11mod-home")
	os.Mkdir(home, 0o700)
	os.Chown(home, uid, gid)
	cfgPath := filepath.Join(dir, "p11mod-keyd.toml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf("homedir = %q\npkcs11_lib_path = %q\npkcs11_base_slot = %q\n", home, tok.LibPath, tok.URI())), 0o600)
	os.Chown(cfgPath, uid, gid)
	testenv.StartService(p, b, testenv.ServiceOptions{Binary: keydBin, Args: []string{"--config", cfgPath, "--log-level", "warn"},
		User: testenv.ServiceUser, Env: tok.Env(), BusName: keys.BusName})
	conn := b.Conn(p)
	const id = "bench-p11mod-ec"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := client.New(conn).CreateKeyPair(ctx, id, "ec-p256"); err != nil {
		return nil, fmt.Errorf("create %s: %w", id, err)
	}
	// The p11-kit server opens the token after keyd made the key.
	srv := testenv.StartP11KitServer(p, tok, testenv.ServiceUser)

	modDir := filepath.Join(dir, "p11mod")
	os.Mkdir(modDir, 0o755)
	if out, err := exec.Command("make", "-s", "--no-print-directory", "-C", testenv.RepoRoot(), "pkcs11mod", "BIN="+modDir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("make pkcs11mod: %v\n%s", err, out)
	}
	os.Setenv("DBUS_SYSTEM_BUS_ADDRESS", b.Address)
	for _, e := range srv.Env() {
		k, v, _ := strings.Cut(e, "=")
		os.Setenv(k, v)
	}
	mod, err := openSigner(filepath.Join(modDir, "libedgev2-pkcs11.so"), "edgev2", "", id)
	if err != nil {
		return nil, fmt.Errorf("libedgev2-pkcs11.so: %w", err)
	}
	defer mod.close()
	rpc, err := openSigner(srv.ClientLib, tok.Label, tok.PIN, id)
	if err != nil {
		return nil, fmt.Errorf("p11-kit-client.so: %w", err)
	}
	defer rpc.close()

	var rows []row
	for _, c := range []int{1, 8} {
		viaRPC := rpc.rate(c)
		viaMod := mod.rate(c)
		rows = append(rows, row{figure: "C_Sign ECDSA via libedgev2-pkcs11 (keyd)", clients: c, ops: viaMod,
			limit: viaRPC, limitOf: "C_Sign via p11-kit RPC, same token"})
	}
	return rows, nil
}

// signer is one PKCS#11 module with c sessions on the token that holds key.
type signer struct {
	ctx  *pkcs11.Ctx
	slot uint
	pin  string
	key  string
}

func openSigner(lib, token, pin, key string) (*signer, error) {
	ctx := pkcs11.New(lib)
	if ctx == nil {
		return nil, fmt.Errorf("cannot load %s", lib)
	}
	if err := ctx.Initialize(); err != nil {
		return nil, err
	}
	s := &signer{ctx: ctx, pin: pin, key: key}
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		return nil, err
	}
	found := false
	for _, sl := range slots {
		ti, err := ctx.GetTokenInfo(sl)
		if err == nil && strings.TrimRight(ti.Label, " ") == token {
			s.slot, found = sl, true
		}
	}
	if !found {
		return nil, fmt.Errorf("no token %q", token)
	}
	return s, nil
}

func (s *signer) close() {
	s.ctx.Finalize()
	s.ctx.Destroy()
}

// rate signs with c threads for the measurement time, one session each.
func (s *signer) rate(c int) float64 {
	type sess struct {
		h   pkcs11.SessionHandle
		key pkcs11.ObjectHandle
	}
	sessions := make(chan sess, c)
	for i := 0; i < c; i++ {
		h, err := s.ctx.OpenSession(s.slot, pkcs11.CKF_SERIAL_SESSION)
		if err != nil {
			fmt.Fprintf(os.Stderr, "open session: %v\n", err)
			return 0
		}
		if s.pin != "" && i == 0 {
			if err := s.ctx.Login(h, pkcs11.CKU_USER, s.pin); err != nil && !strings.Contains(err.Error(), "ALREADY_LOGGED_IN") {
				fmt.Fprintf(os.Stderr, "login: %v\n", err)
			}
		}
		s.ctx.FindObjectsInit(h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, s.key)})
		objs, _, err := s.ctx.FindObjects(h, 1)
		s.ctx.FindObjectsFinal(h)
		if err != nil || len(objs) != 1 {
			fmt.Fprintf(os.Stderr, "find %s: %v (%d found)\n", s.key, err, len(objs))
			return 0
		}
		sessions <- sess{h, objs[0]}
	}
	defer func() {
		close(sessions)
		for x := range sessions {
			s.ctx.CloseSession(x.h)
		}
	}()
	digest := sha256.Sum256([]byte("benchmark payload: a SAS token string to sign"))
	m := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}
	return parallel(c, func() error {
		x := <-sessions
		defer func() { sessions <- x }()
		if err := s.ctx.SignInit(x.h, m, x.key); err != nil {
			return err
		}
		_, err := s.ctx.Sign(x.h, digest[:])
		return err
	})
}
