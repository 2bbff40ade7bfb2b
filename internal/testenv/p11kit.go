package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// P11KitServer is `p11-kit server` (Debian p11-kit) forwarding one SoftHSM
// token on a Unix socket; P11KitClientPath (Debian p11-kit-modules) is the
// PKCS#11 module that reaches it — a remoted token, as an HSM behind a
// network or a token in another container is reached. Kill and Start take
// the server down and bring it back on the same socket.
type P11KitServer struct {
	Socket    string
	ClientLib string // p11-kit-client.so
	tok       *SoftHSMToken
	user      string
	bin       string
	proc      *process
	out       *capBuffer
}

var p11KitClientPaths = []string{
	"/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so",
	"/usr/lib/aarch64-linux-gnu/pkcs11/p11-kit-client.so",
	"/usr/lib/pkcs11/p11-kit-client.so",
}

// P11KitClientPath returns the installed p11-kit-client.so, or "".
func P11KitClientPath() string { return firstExisting(p11KitClientPaths) }

// StartP11KitServer serves tok through `p11-kit server`, letting user
// connect to the socket; the server runs as user, who owns tok's files
// (NewSoftHSMToken hands them over). Cleanup stops it.
func StartP11KitServer(t TB, tok *SoftHSMToken, user string) *P11KitServer {
	t.Helper()
	bins := lookPrograms(t, program{"p11-kit", "p11-kit"})
	if bins == nil {
		return nil
	}
	bin := bins[0]
	client := P11KitClientPath()
	if client == "" {
		Missing(t, "p11-kit-client.so", "not found (Debian package p11-kit-modules)")
		return nil
	}
	dir := SharedTempDir(t, "p11kit")
	uid, gid := EnsureUser(t, user)
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatalf("chown %s: %v", dir, err)
	}
	s := &P11KitServer{Socket: filepath.Join(dir, "pkcs11.sock"), ClientLib: client, tok: tok, user: user, bin: bin, out: &capBuffer{}}
	t.Cleanup(func() {
		s.stop()
		logIfFailed(t, "p11-kit server", s.out)
	})
	s.Start(t)
	return s
}

// Env is what a process needs to reach the server through ClientLib.
func (s *P11KitServer) Env() []string {
	return []string{"P11_KIT_SERVER_ADDRESS=unix:path=" + s.Socket}
}

// Start (re)starts the server on the same socket and waits until it listens.
func (s *P11KitServer) Start(t TB) {
	t.Helper()
	os.Remove(s.Socket)
	cmd := exec.Command(s.bin, "server", "--foreground", "--name", s.Socket,
		"--provider", s.tok.LibPath, "pkcs11:token="+s.tok.Label)
	cmd.Env = append([]string{basePath}, s.tok.Env()...)
	// As the user (the socket is its, 0711 in a directory it owns; the
	// token directory is already its), in its own process group, so the
	// children serving connections go with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: credential(t, s.user)}
	fmt.Fprintf(s.out, "--- testenv: starting p11-kit server on %s ---\n", s.Socket)
	p, err := startProcess(cmd, s.out)
	if err != nil {
		t.Fatalf("start p11-kit server: %v", err)
	}
	s.proc = p
	Eventually(t, 20*time.Second, func() bool {
		// The socket file exists from bind(2); a client connecting
		// before listen(2) is refused and sees no token: wait until a
		// connection is accepted.
		if fi, err := os.Stat(s.Socket); err == nil && fi.Mode()&os.ModeSocket != 0 {
			if c, err := net.DialTimeout("unix", s.Socket, time.Second); err == nil {
				c.Close()
				return true
			}
		}
		select {
		case <-p.done:
			t.Fatalf("p11-kit server exited at start:\n%s", s.out)
		default:
		}
		return false
	}, "p11-kit server made no socket %s:\n%s", s.Socket, s.out)
}

// Kill takes the token away: SIGKILL to the server and every process it
// forked for a connection, as when the host serving a remote token dies.
func (s *P11KitServer) Kill(t TB) {
	t.Helper()
	if s.proc == nil {
		return
	}
	syscall.Kill(-s.proc.cmd.Process.Pid, syscall.SIGKILL)
	<-s.proc.done
	s.proc = nil
}

// Pause makes the token hang: SIGSTOP to the server and its connection
// children. Connections stay open and new ones are still accepted by the
// kernel, but nothing is ever answered, as when a remote HSM wedges.
// Resume (and Cleanup) lets it go on.
func (s *P11KitServer) Pause(t TB) {
	t.Helper()
	if s.proc == nil {
		t.Fatalf("p11-kit server is not running")
	}
	syscall.Kill(-s.proc.cmd.Process.Pid, syscall.SIGSTOP)
}

// Resume undoes Pause.
func (s *P11KitServer) Resume(t TB) {
	t.Helper()
	if s.proc != nil {
		syscall.Kill(-s.proc.cmd.Process.Pid, syscall.SIGCONT)
	}
}

func (s *P11KitServer) stop() {
	if s.proc != nil {
		syscall.Kill(-s.proc.cmd.Process.Pid, syscall.SIGCONT) // a paused server cannot act on SIGTERM
		syscall.Kill(-s.proc.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-s.proc.done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-s.proc.cmd.Process.Pid, syscall.SIGKILL)
			<-s.proc.done
		}
		s.proc = nil
	}
}
