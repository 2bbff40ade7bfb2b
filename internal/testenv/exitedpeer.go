package testenv

import (
	"net"
	"os"
	"os/exec"

	"golang.org/x/sys/unix"
)

const connectAndExitEnv = "EDGEV2_TESTENV_CONNECT_AND_EXIT"

// ConnFromExitedProcess connects to the unix socket sock from a process
// that then exits and is reaped, and returns the connection it made, handed
// over, and the pid it had (free now for the kernel to give out again): a
// peer whose SO_PEERCRED pid names no live process of its own. The process
// is the test binary running TestHelperConnectAndExit, which the calling
// package defines as a call of ConnectAndExit. The connection is closed on
// cleanup.
func ConnFromExitedProcess(t TB, sock string) (net.Conn, int) {
	t.Helper()
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("%v", err)
	}
	defer unix.Close(sp[0])
	child := os.NewFile(uintptr(sp[1]), "handover")
	defer child.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperConnectAndExit$")
	cmd.Env = append(os.Environ(), connectAndExitEnv+"="+sock)
	cmd.ExtraFiles = []*os.File{child}
	if err := cmd.Run(); err != nil { // exited and reaped: its pid is free
		t.Fatalf("the connecting process: %v", err)
	}
	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(sp[0], buf, oob, 0)
	if err != nil {
		t.Fatalf("%v", err)
	}
	msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
	if len(msgs) != 1 {
		t.Fatalf("no connection handed over")
	}
	fds, _ := unix.ParseUnixRights(&msgs[0])
	f := os.NewFile(uintptr(fds[0]), "conn")
	defer f.Close()
	conn, err := net.FileConn(f)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, cmd.Process.Pid
}

// ConnectAndExit is the body of the package's TestHelperConnectAndExit: in
// the process ConnFromExitedProcess starts, it connects, hands the
// connection over fd 3 and exits; in any other run it returns at once.
func ConnectAndExit() {
	sock := os.Getenv(connectAndExitEnv)
	if sock == "" {
		return // only as the helper process
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		os.Exit(2)
	}
	f, _ := c.(*net.UnixConn).File()
	if err := unix.Sendmsg(3, []byte{0}, unix.UnixRights(int(f.Fd())), nil, 0); err != nil {
		os.Exit(3)
	}
	os.Exit(0)
}
