package modrt_test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/edgev2/edgev2/internal/testenv"
	rtapi "github.com/edgev2/edgev2/modrt/api"
)

// A published port is DNAT rules, which bind nothing: checking that no host
// socket holds the port when the module starts is not enough, since a host
// service that binds it afterwards (sshd coming back after an upgrade, a
// service started later at boot) would bind without error and have its
// connections from outside go to the module. modrtd holds the port for as
// long as the module publishes it, as Docker's proxy does, so such a
// service fails to bind, loudly; the port is free again once the module
// stops, and a restarted modrtd holds it again.
func TestPublishedPortCannotBeBoundByAHostServiceWhileTheModuleRuns(t *testing.T) {
	m, _ := startNetworkModrtd(t)
	m.ImportImage(t, testenv.BuildImage(t, "edgev2.test/busybox:1", testenv.ImageConfig{Entrypoint: []string{"/bin/sh", "-c"}}))
	for _, proto := range []string{"tcp", "udp"} {
		l, err := net.Listen("tcp4", "0.0.0.0:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		bind := func() error {
			addr := fmt.Sprintf("0.0.0.0:%d", port)
			if proto == "udp" {
				c, err := net.ListenPacket("udp4", addr)
				if err == nil {
					c.Close()
				}
				return err
			}
			l, err := net.Listen("tcp4", addr)
			if err == nil {
				l.Close()
			}
			return err
		}
		name := "porter-" + proto
		if err := m.CreateModule(name, netSpec(name, fmt.Sprintf(`{"HostConfig":{"PortBindings":{"7001/%s":[{"HostPort":"%d"}]}}}`, proto, port), "sleep 600")); err != nil {
			t.Fatal(err)
		}
		m.waitStatus(t, name, "running")
		if err := bind(); err == nil {
			t.Fatalf("a host service bound %s port %d, which module %s publishes: its connections from outside would go to the module", proto, port, name)
		}
		// A restarted modrtd adopts the running module and holds its port again.
		m.svc.Restart(t)
		m.waitStatus(t, name, "running")
		if err := bind(); err == nil {
			t.Fatalf("after modrtd restarted, a host service bound %s port %d, which module %s publishes", proto, port, name)
		}
		if err := m.Module(name).Call(rtapi.ModuleInterface+".Stop", 0, uint32(1)).Err; err != nil {
			t.Fatal(err)
		}
		m.waitStatus(t, name, "stopped")
		if err := bind(); err != nil {
			t.Fatalf("%s port %d after the module publishing it stopped: %v", proto, port, err)
		}
		m.Module(name).Call(rtapi.ModuleInterface+".Remove", 0)
	}
}

// A host service that bound a module's published port while no modrtd
// held it (modrtd stopped, the module kept running) now loses its
// connections from outside to the module: the modrtd that adopts the
// module says so as a warning, not in a debug line nobody reads.
func TestAdoptedModulesPortTakenByAHostServiceIsAWarning(t *testing.T) {
	m, _ := startNetworkModrtd(t)
	m.ImportImage(t, testenv.BuildImage(t, "edgev2.test/busybox:1", testenv.ImageConfig{Entrypoint: []string{"/bin/sh", "-c"}}))
	l, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	if err := m.CreateModule("porter", netSpec("porter", fmt.Sprintf(`{"HostConfig":{"PortBindings":{"7001/tcp":[{"HostPort":"%d"}]}}}`, port), "sleep 600")); err != nil {
		t.Fatal(err)
	}
	m.waitStatus(t, "porter", "running")
	// Removed through modrtd, which deletes its NAT rules (the host's,
	// shared with every later test).
	defer m.Module("porter").Call(rtapi.ModuleInterface+".Remove", 0)
	m.svc.Stop(t)
	host, err := net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", port))
	if err != nil {
		t.Fatalf("with modrtd stopped, a host service could not bind port %d: %v", port, err)
	}
	defer host.Close()
	m.svc.Restart(t)
	m.waitStatus(t, "porter", "running")
	testenv.Eventually(t, 30*time.Second, func() bool {
		for _, line := range strings.Split(m.svc.Output(), "\n") {
			if strings.Contains(line, "level=WARN") && strings.Contains(line, "adopted module publishes") && strings.Contains(line, "module=porter") {
				return true
			}
		}
		return false
	}, "modrtd did not warn that a host socket holds the adopted module's port %d; output:\n%s", port, m.svc)
}
