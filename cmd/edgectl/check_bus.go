package main

import (
	"context"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	certsapi "github.com/edgev2/edgev2/certs/api"
	cclient "github.com/edgev2/edgev2/certs/client"
	"github.com/edgev2/edgev2/fault"
	iclient "github.com/edgev2/edgev2/identity/client"
	kclient "github.com/edgev2/edgev2/keys/client"
	rtapi "github.com/edgev2/edgev2/modrt/api"
	mclient "github.com/edgev2/edgev2/modrt/client"
)

// requiredActions are the polkit actions the services ask about.
var requiredActions = []string{
	"org.edgev2.keys.read", "org.edgev2.keys.manage", "org.edgev2.keys.use", "org.edgev2.keys.export", "org.edgev2.keys.session",
	certsapi.ActionRead, certsapi.ActionManage,
	"org.edgev2.identity.read", "org.edgev2.identity.manage", "org.edgev2.identity.reprovision",
	rtapi.ActionRead, rtapi.ActionManage,
}

func (k *checker) checkBus(ctx context.Context) {
	conn, err := connect()
	if err != nil {
		k.add("bus", statusError, fault.Message(err), "start dbus (systemctl start dbus), or set DBUS_SYSTEM_BUS_ADDRESS to the bus the services use")
		for _, s := range services {
			k.add("service."+strings.TrimPrefix(s.unit, "edgev2-"), statusSkipped, "the bus is unreachable", "")
		}
		return
	}
	k.conn = conn
	k.ok("bus", "the system bus answers")
	for i, st := range probeServices(ctx, conn) {
		s := services[i]
		name := "service." + strings.TrimPrefix(s.unit, "edgev2-")
		fix := fmt.Sprintf("start it: `systemctl start %s`; if it exits, `journalctl -u %s` says why (often its config: edgectl check names the problem above)", s.unit, s.unit)
		if !st.Running {
			k.add(name, statusError, fmt.Sprintf("%s is not running: nobody owns %s on the bus", s.unit, s.busName), fix)
			continue
		}
		detail, err := k.ping(ctx, s.busName)
		switch {
		case err != nil && fault.Is(err, fault.NotAuthorized):
			k.add(name, statusWarning, fmt.Sprintf("%s runs (pid %d) but polkit denied this user a read: %s", s.unit, st.Pid, fault.Message(err)), "run edgectl check as root")
			k.up[s.busName] = true
		case err != nil:
			k.add(name, statusError, fmt.Sprintf("%s owns %s but does not answer: %s", s.unit, s.busName, fault.Message(err)), fix)
		default:
			k.up[s.busName] = true
			k.results = append(k.results, detail.with(name, s.unit, st.Pid))
		}
	}
}

// pingResult is what a service's cheap call said.
type pingResult struct {
	status, msg, fix string
}

func (p pingResult) with(name, unit string, pid uint32) checkResult {
	st := p.status
	if st == "" {
		st = statusOK
	}
	msg := fmt.Sprintf("%s runs (pid %d)", unit, pid)
	if p.msg != "" {
		msg += ": " + p.msg
	}
	return checkResult{Name: name, Status: st, Message: msg, Fix: p.fix}
}

// ping makes one read-only call a service must answer.
func (k *checker) ping(ctx context.Context, busName string) (pingResult, error) {
	ctx, cancel := context.WithTimeout(ctx, k.o.timeout)
	defer cancel()
	switch busName {
	case "org.edgev2.Keys1":
		engine, err := kclient.New(k.conn).Engine(ctx)
		return pingResult{msg: "engine " + engine}, err
	case certsapi.BusName:
		ids, err := cclient.New(k.conn).List(ctx)
		return pingResult{msg: fmt.Sprintf("%d certificates", len(ids))}, err
	case "org.edgev2.Identity1":
		ic := iclient.New(k.conn)
		state, err := ic.State(ctx)
		if err != nil {
			return pingResult{}, err
		}
		switch state {
		case "provisioned":
			dev, err := ic.DeviceIdentity(ctx)
			if err != nil {
				return pingResult{}, err
			}
			return pingResult{msg: fmt.Sprintf("provisioned as %s on %s", dev.DeviceID, dev.HubHostname)}, nil
		case "failed":
			info, _ := ic.ProvisioningInfo(ctx)
			return pingResult{status: statusError, msg: "provisioning failed: " + info.LastError,
				fix: "correct [provisioning] in the super-config (or identityd.toml), `edgectl config apply`, then `edgectl identity reprovision`"}, nil
		case "unprovisioned":
			return pingResult{status: statusWarning, msg: "not provisioned", fix: "set [provisioning] in the super-config and run `edgectl config apply`"}, nil
		}
		return pingResult{msg: "state " + state}, nil
	case rtapi.BusName:
		info, err := mclient.New(k.conn).SystemInfo(ctx)
		return pingResult{msg: fmt.Sprintf("%s, snapshotter %s", info[rtapi.InfoVersion], info[rtapi.InfoSnapshotter])}, err
	}
	return pingResult{}, nil
}

func (k *checker) checkPolkitActions() {
	path := filepath.Join(k.o.polkitActionsDir, "org.edgev2.policy")
	fix := "reinstall the edgev2 package, which installs " + path
	data, err := os.ReadFile(path)
	if err != nil {
		k.add("polkit.actions", statusError, fmt.Sprintf("cannot read %s: %v; every call by a non-root user is denied", path, err), fix)
		return
	}
	var doc struct {
		Actions []struct {
			ID string `xml:"id,attr"`
		} `xml:"action"`
	}
	if err := xml.Unmarshal(data, &doc); err != nil {
		k.add("polkit.actions", statusError, fmt.Sprintf("%s is not valid polkit XML: %v", path, err), fix)
		return
	}
	have := map[string]bool{}
	for _, a := range doc.Actions {
		have[a.ID] = true
	}
	var missing []string
	for _, a := range requiredActions {
		if !have[a] {
			missing = append(missing, a)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		k.add("polkit.actions", statusError, fmt.Sprintf("%s lacks actions %s", path, strings.Join(missing, ", ")), fix)
		return
	}
	k.ok("polkit.actions", "%s defines all %d edgev2 actions", path, len(requiredActions))
}
