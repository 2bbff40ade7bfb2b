package main

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/keys"
)

// The sign server is the session rows' second limit: raw C_Sign on the
// same token, served by a process that does nothing else. Per connection it
// reads a 32-byte digest, signs it on its own PKCS#11 session (C_SignInit,
// C_Sign) and writes back a 2-byte length and the signature. It pays what
// every signing server pays and raw C_Sign in a loop does not: a second
// process, a wakeup per call, the token's C code run by a thread that sleeps
// between calls. A keyd session beside it is keyd's own cost.
//
// It runs as this binary with EDGEV2_BENCH_SIGNSERVER set to its socket;
// the token, PIN and key come in the environment (never argv).
const (
	signServerEnv = "EDGEV2_BENCH_SIGNSERVER"
	signLibEnv    = "EDGEV2_BENCH_SIGNSERVER_LIB"
	signTokenEnv  = "EDGEV2_BENCH_SIGNSERVER_TOKEN"
	signPINEnv    = "EDGEV2_BENCH_SIGNSERVER_PIN"
	signKeyEnv    = "EDGEV2_BENCH_SIGNSERVER_KEY"
)

// runSignServer serves until it is killed.
func runSignServer(socket string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "sign server:", err)
		os.Exit(1)
	}
	t, err := findECSigner(os.Getenv(signLibEnv), nil, os.Getenv(signTokenEnv), os.Getenv(signPINEnv), os.Getenv(signKeyEnv))
	if err != nil {
		fail(err)
	}
	l, err := net.Listen("unix", socket)
	if err != nil {
		fail(err)
	}
	for w := 0; ; w++ {
		c, err := l.Accept()
		if err != nil {
			fail(err)
		}
		if w >= len(t.sessions) {
			c.Close()
			continue
		}
		go t.serve(c, t.sessions[w])
	}
}

func (t *tokenSigner) serve(c net.Conn, s pkcs11.SessionHandle) {
	defer c.Close()
	var digest [sha256.Size]byte
	for {
		if _, err := io.ReadFull(c, digest[:]); err != nil {
			return
		}
		if err := t.ctx.SignInit(s, []*pkcs11.Mechanism{t.mech}, t.key); err != nil {
			return
		}
		sig, err := t.ctx.Sign(s, digest[:])
		if err != nil {
			return
		}
		out := binary.BigEndian.AppendUint16(nil, uint16(len(sig)))
		if _, err := c.Write(append(out, sig...)); err != nil {
			return
		}
	}
}

// signServerClient is one connection per worker to a running sign server.
type signServerClient struct {
	pid   int
	conns []net.Conn
}

// startSignServer makes a key labelled label on tok, runs the sign server
// on it and connects workers clients; it stops when p's cleanups run.
func startSignServer(e *benchEnv, tok *testenv.SoftHSMToken, label string, workers int) (*signServerClient, error) {
	if _, err := newTokenSigner(tok, tok.LibPath, nil, label, keys.MechECDSASHA256); err != nil {
		return nil, err
	}
	socket := filepath.Join(e.dir, "signserver.sock")
	cmd := exec.Command(e.self)
	cmd.Env = append(os.Environ(), append(tok.Env(), signServerEnv+"="+socket, signLibEnv+"="+tok.LibPath,
		signTokenEnv+"="+tok.Label, signPINEnv+"="+tok.PIN, signKeyEnv+"="+label+"-ec")...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	e.p.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	c := &signServerClient{pid: cmd.Process.Pid}
	e.p.Cleanup(func() {
		for _, conn := range c.conns {
			conn.Close()
		}
	})
	listening := testenv.WaitFor(10*time.Second, func() bool {
		conn, err := net.Dial("unix", socket)
		if err == nil {
			c.conns = append(c.conns, conn)
		}
		return err == nil
	})
	if !listening {
		return nil, fmt.Errorf("sign server: not listening on %s after 10 s", socket)
	}
	for len(c.conns) < workers {
		conn, err := net.Dial("unix", socket)
		if err != nil {
			return nil, err
		}
		c.conns = append(c.conns, conn)
	}
	return c, nil
}

// sign has the server sign benchData's digest on worker w's connection.
func (c *signServerClient) sign(w int) error {
	digest := sha256.Sum256(benchData)
	conn := c.conns[w]
	if _, err := conn.Write(digest[:]); err != nil {
		return err
	}
	var n [2]byte
	if _, err := io.ReadFull(conn, n[:]); err != nil {
		return fmt.Errorf("sign server: %w", err)
	}
	sig := make([]byte, binary.BigEndian.Uint16(n[:]))
	if _, err := io.ReadFull(conn, sig); err != nil {
		return err
	}
	if len(sig) != 64 {
		return errors.New("sign server: not a P-256 signature")
	}
	return nil
}
