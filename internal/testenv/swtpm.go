package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Swtpm is a software TPM 2.0 (Debian's swtpm) manufactured like a real
// one: an RSA EK at 0x81010001 with its certificate in NV 0x01c00002 (and
// an ECC EK at 0x81010016 / NV 0x01c00016), signed by a private "maker"
// CA whose root is MakerCAFile. Commands are served raw (no simulator
// framing) on Addr; the control channel is on CtrlAddr.
type Swtpm struct {
	Dir         string // TPM state directory
	Addr        string // 127.0.0.1:PORT, raw TPM 2.0 command stream
	CtrlAddr    string // 127.0.0.1:PORT, swtpm control channel
	TCTI        string // tpm2-tss TCTI string for tpm2-tools and tpm2-pkcs11
	MakerCAFile string // PEM: the maker's root CA and its intermediate (issuer of the EK certificate)

	proc *process
	out  *capBuffer
}

// StartSwtpm manufactures a fresh TPM (swtpm_setup with EK certificates
// from a private swtpm_localca) and runs swtpm on two loopback ports. Every
// call is a different TPM with a different EK. Cleanup stops it. Missing
// swtpm or swtpm_setup is Missing.
func StartSwtpm(t TB) *Swtpm {
	t.Helper()
	bins := lookPrograms(t, program{"swtpm", "swtpm"}, program{"swtpm_setup", "swtpm-tools"}, program{"swtpm_localca", "swtpm-tools"})
	if bins == nil {
		return nil
	}
	swtpmBin, setupBin, localca := bins[0], bins[1], bins[2]
	dir := SharedTempDir(t, "swtpm")
	s := &Swtpm{Dir: filepath.Join(dir, "state"), out: &capBuffer{}}
	caDir := filepath.Join(dir, "maker-ca")
	for _, d := range []string{s.Dir, caDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatalf("mkdir %s: %v", d, err)
		}
	}
	// A private maker CA, so tests never touch /var/lib/swtpm-localca.
	files := map[string]string{
		"swtpm-localca.conf":    fmt.Sprintf("statedir = %[1]s\nsigningkey = %[1]s/signkey.pem\nissuercert = %[1]s/issuercert.pem\ncertserial = %[1]s/certserial\n", caDir),
		"swtpm-localca.options": "--platform-manufacturer edgev2-test\n--platform-version 2.1\n--platform-model edgev2-swtpm\n",
	}
	files["swtpm_setup.conf"] = fmt.Sprintf("create_certs_tool = %s\ncreate_certs_tool_config = %s\ncreate_certs_tool_options = %s\nactive_pcr_banks = sha256\n",
		localca, filepath.Join(dir, "swtpm-localca.conf"), filepath.Join(dir, "swtpm-localca.options"))
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatalf("write %s: %v", name, err)
		}
	}
	setup := exec.Command(setupBin, "--tpm2", "--tpmstate", s.Dir, "--config", filepath.Join(dir, "swtpm_setup.conf"),
		"--create-ek-cert", "--create-platform-cert", "--overwrite")
	setup.Env = []string{basePath, "HOME=" + dir}
	if out, err := setup.CombinedOutput(); err != nil {
		t.Fatalf("swtpm_setup: %v\n%s", err, out)
	}
	root, err1 := os.ReadFile(filepath.Join(caDir, "swtpm-localca-rootca-cert.pem"))
	issuer, err2 := os.ReadFile(filepath.Join(caDir, "issuercert.pem"))
	if err1 != nil || err2 != nil {
		t.Fatalf("swtpm_localca made no CA: %v %v", err1, err2)
	}
	s.MakerCAFile = filepath.Join(dir, "maker-ca.pem")
	if err := os.WriteFile(s.MakerCAFile, append(root, issuer...), 0o644); err != nil {
		t.Fatalf("write maker CA: %v", err)
	}

	t.Cleanup(func() {
		if s.proc != nil {
			s.proc.stop(syscall.SIGTERM, 5*time.Second)
		}
		logIfFailed(t, "swtpm", s.out)
	})
	for attempt := 1; ; attempt++ {
		// tpm2-tss's swtpm TCTI expects the control channel on port+1.
		s.Addr, s.CtrlAddr = freePortPair(t)
		port, ctrl := portOf(s.Addr), portOf(s.CtrlAddr)
		cmd := exec.Command(swtpmBin, "socket", "--tpm2", "--tpmstate", "dir="+s.Dir,
			"--server", "type=tcp,bindaddr=127.0.0.1,port="+port,
			"--ctrl", "type=tcp,bindaddr=127.0.0.1,port="+ctrl,
			"--flags", "not-need-init,startup-clear")
		cmd.Env = []string{basePath}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		fmt.Fprintf(s.out, "--- testenv: starting swtpm on %s (ctrl %s) ---\n", s.Addr, s.CtrlAddr)
		p, err := startProcess(cmd, s.out)
		if err != nil {
			t.Fatalf("start swtpm: %v", err)
		}
		s.proc = p
		if err := waitListening(s.Addr, p); err == nil {
			s.TCTI = "swtpm:host=127.0.0.1,port=" + port
			return s
		}
		p.stop(syscall.SIGTERM, 5*time.Second)
		if attempt < 3 && strings.Contains(s.out.String(), "in use") {
			continue
		}
		t.Fatalf("swtpm on %s did not start; output:\n%s", s.Addr, s.out)
	}
}

// Dial opens the raw TPM command stream; each connection is one TPM
// client (go-tpm: transport.FromReadWriteCloser(conn)).
func (s *Swtpm) Dial() (net.Conn, error) { return net.DialTimeout("tcp", s.Addr, 5*time.Second) }

// Pid is swtpm's process id.
func (s *Swtpm) Pid() int { return s.proc.cmd.Process.Pid }

// freePortPair finds two consecutive free loopback ports.
func freePortPair(t TB) (string, string) {
	t.Helper()
	for i := 0; i < 50; i++ {
		a := freeLoopbackAddr(t)
		p, _ := strconv.Atoi(portOf(a))
		if p == 0 || p >= 65535 {
			continue
		}
		next := net.JoinHostPort("127.0.0.1", strconv.Itoa(p+1))
		if l, err := net.Listen("tcp", next); err == nil {
			l.Close()
			return a, next
		}
	}
	t.Fatalf("no two consecutive free loopback ports")
	return "", ""
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	if _, err := strconv.Atoi(port); err != nil {
		return "0"
	}
	return port
}

func waitListening(addr string, p *process) error {
	exited := false
	listening := WaitFor(10*time.Second, func() bool {
		select {
		case <-p.done:
			exited = true
			return true
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	switch {
	case exited:
		return fmt.Errorf("exited")
	case !listening:
		return fmt.Errorf("not listening after 10s")
	}
	return nil
}
