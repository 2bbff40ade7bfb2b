package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"
)

// Bus is a private dbus-daemon configured like Debian's system bus: deny
// by default, holes punched only by the repo's policy files and polkit's.
type Bus struct {
	// Address is the bus address, for DBUS_SYSTEM_BUS_ADDRESS or --address.
	Address   string
	proc      *process
	policyDir string
}

// polkitBusPolicy is Debian's bus policy for polkitd, which lets user
// polkitd own org.freedesktop.PolicyKit1 and anyone call it.
const polkitBusPolicy = "/usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf"

// busConfig mirrors /usr/share/dbus-1/system.conf (dbus 1.14) minus what a
// private bus must not do: fork, change user, write a pid file, activate
// system services, log to syslog. The limits are the system bus's.
const busConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path=%s</listen>

  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Properties"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Containers1"/>
    <deny send_destination="org.freedesktop.DBus"
          send_interface="org.freedesktop.DBus"
          send_member="UpdateActivationEnvironment"/>
    <deny send_destination="org.freedesktop.DBus"
          send_interface="org.freedesktop.DBus.Debug.Stats"/>
    <deny send_destination="org.freedesktop.DBus"
          send_interface="org.freedesktop.systemd1.Activator"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Debug.Stats"/>
  </policy>

  <limit name="max_incoming_bytes">133169152</limit>
  <limit name="max_incoming_unix_fds">64</limit>
  <limit name="max_outgoing_bytes">133169152</limit>
  <limit name="max_outgoing_unix_fds">64</limit>
  <limit name="max_message_size">33554432</limit>
  <limit name="max_message_unix_fds">16</limit>
  <limit name="service_start_timeout">25000</limit>
  <limit name="auth_timeout">5000</limit>
  <limit name="pending_fd_timeout">150000</limit>
  <limit name="max_completed_connections">2048</limit>
  <limit name="max_incomplete_connections">64</limit>
  <limit name="max_connections_per_user">256</limit>
  <limit name="max_pending_service_starts">512</limit>
  <limit name="max_names_per_connection">512</limit>
  <limit name="max_match_rules_per_connection">512</limit>
  <limit name="max_replies_per_connection">128</limit>

  <includedir>%s</includedir>
</busconfig>
`

// StartBus starts a private system-like bus whose socket any uid may
// connect to, with the repo's policy/*.conf and polkit's bus policy
// installed. It is killed on cleanup.
func StartBus(t TB) *Bus {
	t.Helper()
	daemon, err := exec.LookPath("dbus-daemon")
	if err != nil {
		Missing(t, "dbus-daemon", "the private system bus needs it (package dbus-daemon)")
	}
	if os.Geteuid() == 0 {
		// Policies naming a user that does not exist yet are dropped
		// when the daemon parses them.
		EnsureAllUsers(t)
	}
	dir := SharedTempDir(t, "bus")
	policyDir := filepath.Join(dir, "system.d")
	if err := os.Mkdir(policyDir, 0o755); err != nil {
		t.Fatalf("make bus policy dir: %v", err)
	}
	policies, err := filepath.Glob(filepath.Join(RepoRoot(), "policy", "*.conf"))
	if err != nil || len(policies) == 0 {
		t.Fatalf("no bus policy files in %s/policy (err %v)", RepoRoot(), err)
	}
	if _, err := os.Stat(polkitBusPolicy); err == nil {
		policies = append(policies, polkitBusPolicy)
	}
	for _, p := range policies {
		copyFile(t, p, filepath.Join(policyDir, filepath.Base(p)), 0o644)
	}
	conf := filepath.Join(dir, "bus.conf")
	socket := filepath.Join(dir, "system_bus_socket")
	if err := os.WriteFile(conf, fmt.Appendf(nil, busConfig, socket, policyDir), 0o644); err != nil {
		t.Fatalf("write bus config: %v", err)
	}

	addrR, addrW, err := os.Pipe()
	if err != nil {
		t.Fatalf("pipe: %v", err)
	}
	defer addrR.Close()
	cmd := exec.Command(daemon, "--nofork", "--print-address=3", "--config-file="+conf)
	cmd.ExtraFiles = []*os.File{addrW}
	cmd.Env = []string{basePath}
	proc, err := startProcess(cmd, &capBuffer{})
	addrW.Close()
	if err != nil {
		t.Fatalf("start dbus-daemon: %v", err)
	}
	b := &Bus{proc: proc, policyDir: policyDir}
	t.Cleanup(func() {
		proc.kill()
		logIfFailed(t, "dbus-daemon", proc.out)
	})

	addr := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(addrR).ReadString('\n')
		addr <- strings.TrimSpace(line)
	}()
	select {
	case b.Address = <-addr:
	case <-time.After(10 * time.Second):
	}
	if b.Address == "" {
		proc.kill()
		t.Fatalf("dbus-daemon printed no address: %s", proc.out)
	}
	return b
}

// Conn connects to the bus as the test process (authenticated, Hello
// done). It is closed on cleanup.
func (b *Bus) Conn(t TB) *dbus.Conn {
	t.Helper()
	conn, err := dbus.Connect(b.Address)
	if err != nil {
		t.Fatalf("connect to bus %s: %v", b.Address, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// WaitForName waits until name has an owner on the bus.
func (b *Bus) WaitForName(t TB, name string, timeout time.Duration) {
	t.Helper()
	if err := b.waitForName(name, timeout, nil, 0); err != nil {
		t.Fatalf("%v", err)
	}
}

// Busctl runs busctl against the bus as user.
func (b *Bus) Busctl(t TB, user string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return RunAs(t, user, nil, "busctl", append([]string{"--address=" + b.Address}, args...)...)
}

var errExited = errors.New("process exited")

// waitForName waits until name has an owner, giving up after timeout or,
// returning errExited, when exited is closed. With pid > 0 the owner must
// be that process: a name still held by an earlier instance (or by anyone
// else) is not the service just started, and calls would reach the wrong
// process.
func (b *Bus) waitForName(name string, timeout time.Duration, exited <-chan struct{}, pid int) error {
	conn, err := dbus.Connect(b.Address)
	if err != nil {
		return fmt.Errorf("connect to bus: %w", err)
	}
	defer conn.Close()
	// Subscribe before asking, so an owner arriving in between is seen.
	signals := make(chan *dbus.Signal, 16)
	conn.Signal(signals)
	if err := conn.AddMatchSignal(
		dbus.WithMatchSender("org.freedesktop.DBus"),
		dbus.WithMatchInterface("org.freedesktop.DBus"),
		dbus.WithMatchMember("NameOwnerChanged"),
		dbus.WithMatchArg(0, name),
	); err != nil {
		return fmt.Errorf("watch owner of %s: %w", name, err)
	}
	owned := func(owner string) bool {
		if owner == "" {
			return false
		}
		if pid <= 0 {
			return true
		}
		var got uint32
		if conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixProcessID", 0, owner).Store(&got) != nil {
			return false // the owner went away in between
		}
		return int(got) == pid
	}
	var owner string
	if conn.BusObject().Call("org.freedesktop.DBus.GetNameOwner", 0, name).Store(&owner) != nil {
		owner = "" // no owner yet
	}
	has := owned(owner)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for !has {
		select {
		case sig, ok := <-signals:
			if !ok {
				return fmt.Errorf("bus connection closed while waiting for %s", name)
			}
			if len(sig.Body) == 3 {
				newOwner, _ := sig.Body[2].(string)
				has = owned(newOwner)
			}
		case <-exited:
			return errExited
		case <-timer.C:
			if pid > 0 {
				return fmt.Errorf("%s is not owned by pid %d within %v", name, pid, timeout)
			}
			return fmt.Errorf("%s got no owner on the bus within %v", name, timeout)
		}
	}
	return nil
}

// waitReleased waits until name is no longer owned by pid (a stopped
// service's name is released when the bus sees its connection close, which
// can come after the process is gone). It gives up quietly after timeout.
func (b *Bus) waitReleased(name string, pid int, timeout time.Duration) {
	conn, err := dbus.Connect(b.Address)
	if err != nil {
		return
	}
	defer conn.Close()
	WaitFor(timeout, func() bool {
		var owner string
		if conn.BusObject().Call("org.freedesktop.DBus.GetNameOwner", 0, name).Store(&owner) != nil {
			return true // no owner
		}
		var got uint32
		return conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixProcessID", 0, owner).Store(&got) != nil || int(got) != pid
	})
}

func copyFile(t TB, src, dst string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatalf("read %s: %v", src, err)
	}
	if err := os.WriteFile(dst, data, mode); err != nil {
		t.Fatalf("write %s: %v", dst, err)
	}
}

// AddPolicy installs a bus policy file (a <busconfig> document) named
// name.conf and has the bus reload its configuration.
func (b *Bus) AddPolicy(t TB, name, xml string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(b.policyDir, name+".conf"), []byte(xml), 0o644); err != nil {
		t.Fatalf("write bus policy %s: %v", name, err)
	}
	conn, err := dbus.Connect(b.Address)
	if err != nil {
		t.Fatalf("connect to bus: %v", err)
	}
	defer conn.Close()
	if err := conn.BusObject().Call("org.freedesktop.DBus.ReloadConfig", 0).Err; err != nil {
		t.Fatalf("reload bus config: %v", err)
	}
}

// Kill stops the bus daemon at once, as a crash of the system bus would.
func (b *Bus) Kill(t TB) {
	t.Helper()
	b.proc.kill()
}

// Pid is the bus daemon's process id (for benchmarks that account CPU).
func (b *Bus) Pid() int { return b.proc.cmd.Process.Pid }
