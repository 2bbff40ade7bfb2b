package ctrd

import (
	"context"
	"encoding/json"
	"net/netip"
	"slices"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/modrt/modspec"
)

// setNetworkLabels records the module's network mode and published ports.
func (req CreateRequest) setNetworkLabels(labels map[string]string) error {
	mode := req.Network
	if mode == "" {
		mode = netModeNone // the opts alone say what the task's network is
	}
	switch mode {
	case netModeDefault, netModeHost, netModeNone:
	default:
		return fault.New(fault.InvalidArgs, "module %q: unknown network mode %q", req.Name, req.Network)
	}
	if len(req.Ports) > 0 && mode != netModeDefault {
		return fault.New(fault.InvalidArgs, "module %q: published ports need the default network", req.Name)
	}
	labels[labelNetwork] = mode
	if len(req.Ports) > 0 {
		data, err := json.Marshal(req.Ports)
		if err != nil {
			return err
		}
		labels[labelPorts] = string(data)
	}
	return nil
}

func networkFromLabels(labels map[string]string) (string, []modspec.PortMapping) {
	mode := labels[labelNetwork]
	switch mode {
	case netModeDefault, netModeNone:
	default:
		mode = netModeHost
	}
	var ports []modspec.PortMapping
	if mode == netModeDefault && labels[labelPorts] != "" {
		if err := json.Unmarshal([]byte(labels[labelPorts]), &ports); err != nil {
			ports = nil
		}
	}
	return mode, ports
}

// OnNetworkChange registers f to be called after a module joined or left
// the default network (its address changed), e.g. to rewrite hosts files.
func (r *Runtime) OnNetworkChange(f func()) { r.netHook.Store(&f) }

func (r *Runtime) netChanged() {
	if f := r.netHook.Load(); f != nil {
		(*f)()
	}
}

// Network is the default network; nil when none is configured.
func (r *Runtime) Network() Network { return r.cfg.Network }

// attachNet joins m's new task (pid, created, not started) to the default
// network. m.op is held.
func (r *Runtime) attachNet(ctx context.Context, m *module, pid uint32) error {
	if m.netMode != netModeDefault {
		return nil
	}
	if r.cfg.Network == nil {
		return fault.New(fault.Unavailable, "module %q is on the default network, which is not available (CNI plugins missing?)", m.name)
	}
	addr, err := r.cfg.Network.Attach(ctx, m.name, pid, m.ports)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.addr = addr
	m.mu.Unlock()
	r.log.Info("module joined the network", "module", m.name, "network", r.cfg.Network.Name(), "addr", addr, "ports", len(m.ports))
	r.netChanged()
	return nil
}

// adoptNet re-learns the address of m's running task attached by an earlier
// run. m.op is held.
func (r *Runtime) adoptNet(ctx context.Context, m *module, pid uint32) {
	if m.netMode != netModeDefault || r.cfg.Network == nil {
		return
	}
	addr, checkErr, err := r.cfg.Network.Adopt(ctx, m.name, pid, m.ports)
	if err != nil {
		r.log.Warn("adopted module's network attachment is unknown; it is reattached at its next start", "module", m.name, "err", err)
		return
	}
	switch {
	case fault.Is(checkErr, fault.AlreadyExists):
		// A host service bound a port the module publishes while no
		// modrtd held it: its connections from outside go to the module.
		r.log.Warn("a host socket holds a port an adopted module publishes; connections from outside reach the module, not the host service, until the module's next start refuses the port", "module", m.name, "err", checkErr)
	case checkErr != nil:
		r.log.Debug("CNI CHECK of an adopted module", "module", m.name, "err", checkErr)
	}
	m.mu.Lock()
	m.addr = addr
	m.mu.Unlock()
	r.netChanged()
}

// detachNet releases m's attachment (idempotent). m.op is held.
func (r *Runtime) detachNet(ctx context.Context, m *module) {
	if m.netMode != netModeDefault || r.cfg.Network == nil {
		return
	}
	if err := r.cfg.Network.Detach(ctx, m.name, m.ports); err != nil {
		r.log.Warn("release the module's network attachment", "module", m.name, "err", err)
	}
	m.mu.Lock()
	had := m.addr.IsValid()
	m.addr = netip.Addr{}
	m.mu.Unlock()
	if had {
		r.netChanged()
	}
}

// recoverNet releases the address leases (and rules) of modules of this
// namespace that no longer exist: what a crash of modrtd between a
// container's deletion and its network release left. (Reconcile releases
// those of modules that exist and do not run.)
func (r *Runtime) recoverNet(ctx context.Context) {
	n := r.cfg.Network
	if n == nil {
		return
	}
	leased, err := n.Leased()
	if err != nil {
		r.log.Warn("list network leases", "err", err)
		return
	}
	slices.Sort(leased)
	for _, name := range slices.Compact(leased) {
		if _, err := r.module(name); err == nil {
			continue // reconcile released it unless its task runs
		}
		r.log.Info("releasing a stale network lease", "module", name)
		if err := n.Detach(ctx, name, nil); err != nil {
			r.log.Warn("release stale network lease", "module", name, "err", err)
		}
	}
}
