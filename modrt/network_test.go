package modrt_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/edgev2/edgev2/internal/testenv"
	rtapi "github.com/edgev2/edgev2/modrt/api"
	rtconfig "github.com/edgev2/edgev2/modrt/config"
)

// The test network: its own bridge and a private subnet, its state under
// the test's directory, so it meets no other network of the machine.
const (
	testBridge  = "edgev2t0"
	testSubnet  = "10.213.251.0/24"
	testGateway = "10.213.251.1"
	testNetwork = "azure-iot-edge"
)

func requireCNI(t *testing.T) {
	t.Helper()
	for _, p := range []string{"bridge", "host-local", "portmap"} {
		if _, err := os.Stat(filepath.Join(rtconfig.DefaultCNIPluginDir, p)); err != nil {
			testenv.Missing(t, "containernetworking-plugins", "CNI plugin "+p+" is not in "+rtconfig.DefaultCNIPluginDir+" (Debian package containernetworking-plugins)")
		}
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		testenv.Missing(t, "iptables", "iptables is not on PATH (Debian package iptables)")
	}
}

// startNetworkModrtd runs modrtd with the test network and extra config.
func startNetworkModrtd(t *testing.T, extra ...string) (*modrtd, string) {
	t.Helper()
	testenv.RequireRoot(t)
	requireCNI(t)
	state := filepath.Join(testenv.SharedTempDir(t, "net-state"), "net")
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", testBridge).Run()
		exec.Command("iptables", "-w", "-t", "nat", "-D", "POSTROUTING", "-s", testSubnet, "!", "-o", testBridge, "-m", "comment", "--comment", "edgev2 network "+testNetwork, "-j", "MASQUERADE").Run()
	})
	netConf := fmt.Sprintf("[network]\nname = %q\nbridge = %q\nsubnet = %q\nstate_dir = %q\n", testNetwork, testBridge, testSubnet, state)
	return startModrtd(t, append([]string{netConf}, extra...)...), state
}

// loopbackListener listens on the host's 127.0.0.1 and counts connections.
func loopbackListener(t *testing.T) (port string, accepted *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	accepted = &atomic.Int32{}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Write([]byte("HOST-SECRET\n"))
			c.Close()
		}
	}()
	_, port, _ = net.SplitHostPort(l.Addr().String())
	return port, accepted
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func netSpec(name, createOptions, cmd string) string {
	var co map[string]any
	if err := json.Unmarshal([]byte(createOptions), &co); err != nil {
		panic(err)
	}
	co["Cmd"] = []string{cmd}
	data, _ := json.Marshal(co)
	return fmt.Sprintf(`{"name":%q,"type":"docker","restartPolicy":"never","config":{"settings":{"image":"edgev2.test/busybox:1","createOptions":%s}}}`, name, data)
}

func TestDefaultNetworkModulesReachEachOtherByNameButNotTheHostsLoopback(t *testing.T) {
	m, state := startNetworkModrtd(t, "[policy]\nallow_host_network = [\"hostnet-ok\"]")
	top := t
	m.ImportImage(t, testenv.BuildImage(t, "edgev2.test/busybox:1", testenv.ImageConfig{Entrypoint: []string{"/bin/sh", "-c"}}))
	hostPort, accepted := loopbackListener(t)

	// The server listens on the default network; the client finds it by name.
	if err := m.CreateModule("server", netSpec("server", `{}`, "nc -ll -p 7000 -e /bin/echo PONG")); err != nil {
		t.Fatal(err)
	}
	m.waitStatus(t, "server", "running")
	client := fmt.Sprintf(`until echo | nc -w 2 server 7000 | grep -q PONG; do sleep 0.2; done; echo BY-NAME ok;
		if nc -w 2 127.0.0.1 %[1]s </dev/null; then echo LOOPBACK reached; else echo LOOPBACK refused; fi;
		if nc -w 2 %[2]s %[1]s </dev/null; then echo GATEWAY reached; else echo GATEWAY refused; fi;
		grep -w client /etc/hosts | grep -q 10.213.251. && echo OWN-NAME ok; sleep 600`, hostPort, testGateway)
	if err := m.CreateModule("client", netSpec("client", `{"HostConfig":{"NetworkMode":"azure-iot-edge"}}`, client)); err != nil {
		t.Fatal(err)
	}
	t.Run("ReachesAnotherModuleByName", func(t *testing.T) {
		m.waitLog(t, "client", "BY-NAME")
		m.waitLog(t, "client", "OWN-NAME")
	})
	t.Run("CannotReachAPortBoundOnTheHostsLoopback", func(t *testing.T) {
		if got := m.waitLog(t, "client", "LOOPBACK"); got != "LOOPBACK refused" {
			t.Errorf("from a module, the host's 127.0.0.1:%s: %s", hostPort, got)
		}
		if got := m.waitLog(t, "client", "GATEWAY"); got != "GATEWAY refused" {
			t.Errorf("from a module, the gateway %s:%s: %s", testGateway, hostPort, got)
		}
		if n := accepted.Load(); n != 0 {
			t.Errorf("the host's loopback listener accepted %d connections from modules", n)
		}
		for _, f := range []string{"all", testBridge} {
			if v, _ := os.ReadFile("/proc/sys/net/ipv4/conf/" + f + "/route_localnet"); strings.TrimSpace(string(v)) != "0" {
				t.Errorf("route_localnet on %s is %q", f, v)
			}
		}
	})
	t.Run("PublishedPortIsReachableFromTheHost", func(t *testing.T) {
		port := freePort(t)
		if err := m.CreateModule("web", netSpec("web", fmt.Sprintf(`{"ExposedPorts":{"7001/tcp":{}},"HostConfig":{"PortBindings":{"7001/tcp":[{"HostPort":"%d"}]}}}`, port), "nc -ll -p 7001 -e /bin/echo WEB")); err != nil {
			t.Fatal(err)
		}
		m.waitStatus(t, "web", "running")
		addr := net.JoinHostPort(testGateway, strconv.Itoa(port))
		testenv.EventuallyNoError(t, 20*time.Second, func() error {
			c, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err != nil {
				return err
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if line != "WEB\n" {
				return fmt.Errorf("read %q", line)
			}
			return nil
		}, "published port %s never answered", addr)
		// Another module cannot take the same host port.
		err := m.CreateModule("web2", netSpec("web2", fmt.Sprintf(`{"HostConfig":{"PortBindings":{"7001/tcp":[{"HostPort":"%d"}]}}}`, port), "sleep 600"))
		if dbusErrName(err) != "org.edgev2.Error.AlreadyExists" {
			t.Errorf("a second module on host port %d: %v", port, err)
		}
	})
	t.Run("PortOfAHostServiceIsNotTaken", func(t *testing.T) {
		// A service of the host listens on all addresses (sshd on 22); a
		// deployment that publishes the same port must not turn the
		// host's connections to it towards a module.
		l, err := net.Listen("tcp4", "0.0.0.0:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Write([]byte("HOST-SSHD\n"))
				c.Close()
			}
		}()
		port := l.Addr().(*net.TCPAddr).Port
		err = m.CreateModule("hijack", netSpec("hijack", fmt.Sprintf(`{"HostConfig":{"PortBindings":{"7002/tcp":[{"HostPort":"%d"}]}}}`, port), "nc -ll -p 7002 -e /bin/echo HIJACKED"))
		if dbusErrName(err) != "org.edgev2.Error.AlreadyExists" || !strings.Contains(err.Error(), "in use on the host") {
			t.Errorf("publishing host port %d, which a host service listens on: %v; want AlreadyExists naming the host's use", port, err)
		}
		addr := net.JoinHostPort(testGateway, strconv.Itoa(port))
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("the host service at %s: %v", addr, err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if line, _ := bufio.NewReader(c).ReadString('\n'); line != "HOST-SSHD\n" {
			t.Errorf("a connection to the host service's port %s got %q", addr, line)
		}
	})
	t.Run("HostNetworkRefusedWithoutTheOptIn", func(t *testing.T) {
		err := m.CreateModule("hostnet", netSpec("hostnet", `{"HostConfig":{"NetworkMode":"host"}}`, "sleep 600"))
		if dbusErrName(err) != "org.edgev2.Error.InvalidArgs" || !strings.Contains(err.Error(), "allow_host_network") {
			t.Fatalf("host network without the opt-in: %v", err)
		}
	})
	t.Run("HostNetworkWorksWithTheOptIn", func(t *testing.T) {
		cmd := fmt.Sprintf(`if nc -w 2 127.0.0.1 %s </dev/null | grep -q HOST-SECRET; then echo HOSTNET reached; else echo HOSTNET refused; fi; grep -w server /etc/hosts | grep -q 10.213.251. && echo SEES-SERVER ok; sleep 600`, hostPort)
		if err := m.CreateModule("hostnet-ok", netSpec("hostnet-ok", `{"HostConfig":{"NetworkMode":"host"}}`, cmd)); err != nil {
			t.Fatal(err)
		}
		if got := m.waitLog(t, "hostnet-ok", "HOSTNET"); got != "HOSTNET reached" {
			t.Errorf("host-network module: %s", got)
		}
		m.waitLog(t, "hostnet-ok", "SEES-SERVER")
	})
	t.Run("LeasesAreRecoveredAfterACrash", func(t *testing.T) {
		// modrtd dies; meanwhile the client's container is deleted behind
		// its back. The restarted modrtd adopts the server and releases
		// the client's lease and rules.
		m.svc.Kill9(t)
		testenv.EventuallyNoError(t, 15*time.Second, func() error {
			out, err := exec.Command("ctr", "-a", m.ctr.Address, "-n", "edgev2-test", "tasks", "delete", "--force", "client").CombinedOutput()
			if err != nil && !strings.Contains(string(out), "not found") {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		}, "delete the client's task")
		m.ctr.Ctr(t, "-n", "edgev2-test", "containers", "delete", "client")
		if !leaseOf(t, state, "edgev2-test.client") {
			t.Fatal("the client has no lease before the restart: the test proves nothing")
		}
		m.svc.Restart(t)
		m.conn = m.bus.Conn(top)
		m.waitStatus(t, "server", "running")
		testenv.Eventually(t, 15*time.Second, func() bool { return !leaseOf(t, state, "edgev2-test.client") },
			"the deleted client's address lease stays")
		hosts, _ := os.ReadFile(filepath.Join(m.home, "hosts", "network-hosts"))
		if !strings.Contains(string(hosts), "\tserver") || strings.Contains(string(hosts), "client") {
			t.Errorf("network hosts after the restart:\n%s", hosts)
		}
	})
	t.Run("RemoveLeavesNoNetworkState", func(t *testing.T) {
		var list []string
		if err := m.Runtime().Call(rtapi.Interface+".ListModules", 0).Store(&list); err != nil {
			t.Fatal(err)
		}
		for _, n := range list {
			// Stop first with a short grace (sh as pid 1 ignores SIGTERM).
			if err := m.Module(n).Call(rtapi.ModuleInterface+".Stop", 0, uint32(1)).Err; err != nil {
				t.Fatal(err)
			}
			if err := m.Module(n).Call(rtapi.ModuleInterface+".Remove", 0).Err; err != nil {
				t.Fatal(err)
			}
		}
		if n := leases(t, state); n != 0 {
			t.Errorf("%d address leases left after every module was removed", n)
		}
		if out, _ := exec.Command("ip", "-o", "link", "show", "master", testBridge).CombinedOutput(); strings.TrimSpace(string(out)) != "" {
			t.Errorf("interfaces left on the bridge: %s", out)
		}
		if rules := natRules(t); strings.Contains(rules, "edgev2-test.") {
			t.Errorf("NAT rules left:\n%s", rules)
		}
		hosts, _ := os.ReadFile(filepath.Join(m.home, "hosts", "network-hosts"))
		if strings.Contains(string(hosts), "server") {
			t.Errorf("removed modules are still in the hosts file:\n%s", hosts)
		}
	})
}

func dbusErrName(err error) string {
	if e, ok := err.(godbus.Error); ok {
		return e.Name
	}
	if e, ok := err.(*godbus.Error); ok {
		return e.Name
	}
	return fmt.Sprint(err)
}

// leases counts the address leases in the network's IPAM state.
func leases(t *testing.T, state string) int {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(state, "ipam", testNetwork))
	n := 0
	for _, e := range ents {
		if net.ParseIP(e.Name()) != nil {
			n++
		}
	}
	return n
}

// leaseOf reports whether CNI container id holds an address lease.
func leaseOf(t *testing.T, state, id string) bool {
	t.Helper()
	dir := filepath.Join(state, "ipam", testNetwork)
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		first, _, _ := strings.Cut(string(data), "\n")
		if err == nil && net.ParseIP(e.Name()) != nil && strings.TrimSpace(first) == id {
			return true
		}
	}
	return false
}

func natRules(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("iptables-save", "-t", "nat").CombinedOutput()
	if err != nil {
		t.Fatalf("iptables-save: %v: %s", err, out)
	}
	return string(out)
}
