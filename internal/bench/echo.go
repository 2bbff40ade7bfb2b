package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	godbus "github.com/godbus/dbus/v5"

	"github.com/edgev2/edgev2/internal/testenv"
)

// The echo service is the bus's own limit: a real method call (sent,
// dispatched by godbus to a method, answered with the same 64 bytes)
// through the same dbus-daemon keyd is reached through, unlike
// org.freedesktop.DBus.Peer.Ping, which godbus answers itself.
const (
	echoName      = "org.edgev2.BenchEcho1"
	echoPath      = godbus.ObjectPath("/org/edgev2/BenchEcho1")
	echoInterface = "org.edgev2.BenchEcho1"
)

// echoPolicy lets the keys service user own the echo name and anyone call
// it, as keyd's own bus policy does for org.edgev2.Keys1.
var echoPolicy = fmt.Sprintf(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <policy user=%q><allow own=%q/></policy>
  <policy context="default"><allow send_destination=%q send_interface=%q/></policy>
</busconfig>
`, testenv.ServiceUser, echoName, echoName, echoInterface)

type echo struct{}

func (echo) Echo(b []byte) ([]byte, *godbus.Error) { return b, nil }

// runEcho serves the echo service on the system bus of the environment
// until SIGTERM.
func runEcho() {
	conn, err := godbus.ConnectSystemBus()
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
	if err := conn.Export(echo{}, echoPath, echoInterface); err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
	if r, err := conn.RequestName(echoName, godbus.NameFlagDoNotQueue); err != nil || r != godbus.RequestNameReplyPrimaryOwner {
		fmt.Fprintln(os.Stderr, "echo: name not owned:", r, err)
		os.Exit(1)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}

// startEcho runs the echo service as the keys service user.
func startEcho(e *benchEnv) *testenv.Service {
	e.b.AddPolicy(e.p, "bench-echo", echoPolicy)
	return testenv.StartService(e.p, e.b, testenv.ServiceOptions{Binary: e.self, Args: []string{"-echo"},
		User: testenv.ServiceUser, BusName: echoName})
}
