package main

import (
	"context"
	"fmt"
	"io"

	godbus "github.com/godbus/dbus/v5"

	certsapi "github.com/edgev2/edgev2/certs/api"
	rtapi "github.com/edgev2/edgev2/modrt/api"
)

// services are the four edgev2 services: systemd unit, bus name, and the
// property or call that shows they answer.
var services = []struct {
	unit, busName, config string
}{
	{"edgev2-keyd", "org.edgev2.Keys1", "keyd.toml"},
	{"edgev2-certd", certsapi.BusName, "certd.toml"},
	{"edgev2-identityd", "org.edgev2.Identity1", "identityd.toml"},
	{"edgev2-modrtd", rtapi.BusName, "modrtd.toml"},
}

type serviceStatus struct {
	Service string `json:"service"`
	BusName string `json:"bus_name"`
	Running bool   `json:"running"`
	Pid     uint32 `json:"pid,omitempty"`
	Detail  string `json:"detail,omitempty"`
}

// probeServices asks the bus who owns each service's name.
func probeServices(ctx context.Context, conn *godbus.Conn) []serviceStatus {
	out := make([]serviceStatus, 0, len(services))
	for _, s := range services {
		st := serviceStatus{Service: s.unit, BusName: s.busName}
		var owner string
		err := conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetNameOwner", 0, s.busName).Store(&owner)
		if err != nil {
			st.Detail = "not on the bus"
		} else {
			st.Running = true
			var pid uint32
			if conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetConnectionUnixProcessID", 0, owner).Store(&pid) == nil {
				st.Pid = pid
			}
		}
		out = append(out, st)
	}
	return out
}

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := &cli{name: "status", stdout: stdout, stderr: stderr}
	if _, code := c.parse(c.flags(), args, 0, 0, "[--json]"); code >= 0 {
		return code
	}
	conn, err := connect()
	if err != nil {
		return c.fail(err)
	}
	defer conn.Close()
	sts := probeServices(ctx, conn)
	code := exitOK
	rows := make([][]string, 0, len(sts))
	for _, s := range sts {
		state, pid := "running", fmt.Sprint(s.Pid)
		if !s.Running {
			state, pid, code = "NOT RUNNING", "-", exitFailed
		}
		rows = append(rows, []string{s.Service, s.BusName, state, pid})
	}
	if c.json {
		if e := c.emit(sts); e != exitOK {
			return e
		}
		return code
	}
	c.table([]string{"SERVICE", "BUS NAME", "STATE", "PID"}, rows)
	return code
}
