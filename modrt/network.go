package modrt

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/edgev2/edgev2/fault"
	rtconfig "github.com/edgev2/edgev2/modrt/config"
	"github.com/edgev2/edgev2/modrt/modspec"
)

// The default network: every module not on the host's network or on none
// gets its own network namespace (the one runc makes for its task) joined
// to a bridge by the CNI plugins of Debian's containernetworking-plugins
// (bridge with host-local IPAM and IP masquerade, as Docker's bridge
// network does; portmap for published ports). Its state (IPAM leases, the
// plugins' cached results) lives on /run by default, so it ends with the
// kernel's network state at reboot; what a crash leaves behind is
// released when the runtime opens again.

const (
	cniVersion   = "1.0.0" // the newest Debian 12's plugins (1.1.1) speak
	moduleIfName = "eth0"
)

// Network attaches modules' tasks to the default network.
type Network struct {
	cfg     rtconfig.NetworkConfig
	ns      string // containerd namespace: CNI container ids are "<ns>.<module>"
	gateway netip.Addr
	cni     *libcni.CNIConfig
	list    *libcni.NetworkConfigList

	mu    sync.Mutex
	ports map[string]string      // hostKey → module holding it
	held  map[string][]io.Closer // module → the host sockets holding its ports (holdPorts)
}

// OpenNetwork checks that the CNI plugins are there and prepares the
// default network for the modules of containerd namespace ns. Nothing is
// created until the first module attaches (the bridge plugin makes the
// bridge then).
func OpenNetwork(cfg rtconfig.NetworkConfig, ns string) (*Network, error) {
	if err := cfg.SetDefaults("[network]"); err != nil {
		return nil, fault.Wrap(fault.InvalidArgs, err, "%v", err)
	}
	for _, plugin := range []string{"bridge", "host-local", "portmap"} {
		found := false
		for _, d := range cfg.PluginDirs {
			if st, err := os.Stat(filepath.Join(d, plugin)); err == nil && st.Mode().IsRegular() {
				found = true
			}
		}
		if !found {
			return nil, fault.New(fault.Unavailable, "CNI plugin %q is not in %s (Debian package containernetworking-plugins)", plugin, strings.Join(cfg.PluginDirs, ", "))
		}
	}
	pfx := netip.MustParsePrefix(cfg.Subnet)
	gw := pfx.Addr().Next()
	conf := map[string]any{
		"cniVersion": cniVersion,
		"name":       cfg.Name,
		"plugins": []any{
			map[string]any{
				// ipMasq false: the plugin's per-module masquerade rules are
				// removed only while the module's network namespace still
				// exists, which a task that exited no longer has; the
				// network's one masquerade rule (masquerade below) is
				// Docker's.
				"type": "bridge", "bridge": cfg.Bridge, "isGateway": true, "ipMasq": false, "hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": cfg.Subnet, "gateway": gw.String()}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
					"dataDir": filepath.Join(cfg.StateDir, "ipam"),
				},
			},
			// snat false: portmap would otherwise set route_localnet on the
			// bridge (to DNAT 127.0.0.1:port), which lets a module's packets
			// to 127.0.0.1 reach the host's loopback services.
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}, "snat": false},
		},
	}
	data, err := json.Marshal(conf)
	if err != nil {
		return nil, err
	}
	list, err := libcni.ConfListFromBytes(data)
	if err != nil {
		return nil, fault.Wrap(fault.InvalidArgs, err, "default network configuration: %v", err)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("network state dir: %w", err)
	}
	if err := masquerade(cfg); err != nil {
		return nil, fault.Wrap(fault.Unavailable, err, "default network %s: %v", cfg.Name, err)
	}
	return &Network{
		cfg: cfg, ns: ns, gateway: gw, list: list,
		cni:   libcni.NewCNIConfigWithCacheDir(cfg.PluginDirs, filepath.Join(cfg.StateDir, "cache"), nil),
		ports: map[string]string{},
	}, nil
}

// masquerade makes sure of the network's one NAT rule for traffic leaving
// it (Docker's: -s <subnet> ! -o <bridge> -j MASQUERADE), so modules reach
// beyond the host as Docker containers do.
func masquerade(cfg rtconfig.NetworkConfig) error {
	rule := []string{"POSTROUTING", "-s", cfg.Subnet, "!", "-o", cfg.Bridge, "-m", "comment", "--comment", "edgev2 network " + cfg.Name, "-j", "MASQUERADE"}
	if exec.Command("iptables", append([]string{"-w", "-t", "nat", "-C"}, rule...)...).Run() == nil {
		return nil
	}
	if out, err := exec.Command("iptables", append([]string{"-w", "-t", "nat", "-A"}, rule...)...).CombinedOutput(); err != nil {
		return fmt.Errorf("iptables: add the masquerade rule: %v: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// Name is the network's name (what NetworkMode may say for it).
func (n *Network) Name() string { return n.cfg.Name }

// Bridge is the host's bridge device.
func (n *Network) Bridge() string { return n.cfg.Bridge }

// Gateway is the host's address on the network.
func (n *Network) Gateway() netip.Addr { return n.gateway }

func (n *Network) containerID(module string) string { return n.ns + "." + module }

func (n *Network) runtimeConf(module, netns string, ports []modspec.PortMapping) *libcni.RuntimeConf {
	if ports == nil {
		ports = []modspec.PortMapping{}
	}
	return &libcni.RuntimeConf{ContainerID: n.containerID(module), NetNS: netns, IfName: moduleIfName,
		CapabilityArgs: map[string]any{"portMappings": ports}}
}

// claimPorts records module's host ports, refusing one another module holds
// (on the same address, or on all addresses where either publishes).
func (n *Network) claimPorts(module string, ports []modspec.PortMapping) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, p := range ports {
		for _, q := range []modspec.PortMapping{p, {HostPort: p.HostPort, Protocol: p.Protocol}} {
			if other, ok := n.ports[q.HostKey()]; ok && other != module {
				return fault.New(fault.AlreadyExists, "module %q: host port %s is already published by module %q", module, p.HostKey(), other)
			}
		}
		if p.HostIP == "" {
			for k, other := range n.ports {
				if other != module && strings.HasPrefix(k, p.Protocol+"/") && strings.HasSuffix(k, fmt.Sprintf(":%d", p.HostPort)) {
					return fault.New(fault.AlreadyExists, "module %q: host port %s is already published by module %q", module, p.HostKey(), other)
				}
			}
		}
	}
	for _, p := range ports {
		n.ports[p.HostKey()] = module
	}
	return nil
}

// releasePorts forgets module's host ports and lets go of the sockets
// holding them.
func (n *Network) releasePorts(module string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for k, m := range n.ports {
		if m == module {
			delete(n.ports, k)
		}
	}
	for _, c := range n.held[module] {
		c.Close()
	}
	delete(n.held, module)
}

// holdPorts binds module's host ports on the host and keeps them bound
// while the module publishes them. The portmap plugin publishes with DNAT
// rules, which bind nothing and win over a host service listening there: a
// port a host socket holds is refused (sshd on 22; Docker's proxy cannot
// bind it either), and, held, a port cannot be taken by a host service
// that starts later (it fails to bind, as with Docker's proxy, instead of
// binding and losing its connections from outside to the module). Only
// connections to the host's loopback reach a held TCP port (portmap does
// not forward them): they are closed at once.
func (n *Network) holdPorts(module string, ports []modspec.PortMapping) error {
	var held []io.Closer
	for _, p := range ports {
		c, err := holdPort(p)
		if err != nil {
			for _, h := range held {
				h.Close()
			}
			return fault.Wrap(fault.AlreadyExists, err, "module %q: host port %s is in use on the host (%v); a published port must not take the connections of a host service", module, p.HostKey(), err)
		}
		held = append(held, c)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.held == nil {
		n.held = map[string][]io.Closer{}
	}
	n.held[module] = append(n.held[module], held...)
	return nil
}

func holdPort(p modspec.PortMapping) (io.Closer, error) {
	addr := net.JoinHostPort(cmp.Or(p.HostIP, "0.0.0.0"), strconv.Itoa(p.HostPort))
	if p.Protocol == "udp" {
		return net.ListenPacket("udp4", addr) // never read: the module's traffic is DNATed before it
	}
	l, err := net.Listen("tcp4", addr)
	if err != nil {
		return nil, err
	}
	go func() { // ends when releasePorts closes l
		for {
			c, err := l.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				time.Sleep(100 * time.Millisecond) // out of descriptors: let others have them
				continue
			}
			c.Close()
		}
	}()
	return l, nil
}

// Attach joins the network namespace of task pid (module's, made by runc
// and not yet running anything) to the network and publishes ports. It
// returns the module's address.
func (n *Network) Attach(ctx context.Context, module string, pid uint32, ports []modspec.PortMapping) (netip.Addr, error) {
	if err := n.claimPorts(module, ports); err != nil {
		return netip.Addr{}, err
	}
	if err := n.holdPorts(module, ports); err != nil {
		n.releasePorts(module)
		return netip.Addr{}, err
	}
	rc := n.runtimeConf(module, fmt.Sprintf("/proc/%d/ns/net", pid), ports)
	res, err := n.cni.AddNetworkList(ctx, n.list, rc)
	if err != nil {
		n.Detach(ctx, module, ports)
		return netip.Addr{}, fault.Wrap(fault.Failed, err, "module %q: join network %s: %v", module, n.cfg.Name, err)
	}
	addr, err := resultAddr(res)
	if err != nil {
		n.Detach(ctx, module, ports)
		return netip.Addr{}, fault.Wrap(fault.Failed, err, "module %q: network %s: %v", module, n.cfg.Name, err)
	}
	return addr, nil
}

// Adopt re-learns the address and ports of a module whose task was
// attached by an earlier run of the runtime (from the plugins' cached
// result), and what CNI CHECK says of the attachment.
func (n *Network) Adopt(ctx context.Context, module string, pid uint32, ports []modspec.PortMapping) (addr netip.Addr, checkErr, err error) {
	if err := n.claimPorts(module, ports); err != nil {
		return netip.Addr{}, nil, err
	}
	rc := n.runtimeConf(module, fmt.Sprintf("/proc/%d/ns/net", pid), ports)
	res, err := n.cni.GetNetworkListCachedResult(n.list, rc)
	if err != nil || res == nil {
		return netip.Addr{}, nil, fmt.Errorf("no cached attachment of %q: %v", module, err)
	}
	if addr, err = resultAddr(res); err != nil {
		return netip.Addr{}, nil, err
	}
	// CHECK is advice: Debian 12's portmap fails it for any module with
	// published ports (it looks for an IPv6 chain it never made). So is a
	// port a host socket took while no modrtd held it: the module runs.
	checkErr = n.cni.CheckNetworkList(ctx, n.list, rc)
	if err := n.holdPorts(module, ports); err != nil {
		checkErr = errors.Join(checkErr, err)
	}
	return addr, checkErr, nil
}

// Detach releases what Attach made for module: its address lease, its
// masquerade and port-forwarding rules (the veth pair went with the
// task's network namespace). It is idempotent.
func (n *Network) Detach(ctx context.Context, module string, ports []modspec.PortMapping) error {
	n.releasePorts(module)
	if err := n.cni.DelNetworkList(ctx, n.list, n.runtimeConf(module, "", ports)); err != nil {
		return fmt.Errorf("leave network %s: %w", n.cfg.Name, err)
	}
	return nil
}

// Leased returns the modules of this namespace holding an address lease.
func (n *Network) Leased() ([]string, error) {
	dir := filepath.Join(n.cfg.StateDir, "ipam", n.cfg.Name)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var mods []string
	for _, e := range ents {
		if _, err := netip.ParseAddr(e.Name()); err != nil {
			continue // last_reserved_ip.0, lock
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		id, _, _ := strings.Cut(strings.ReplaceAll(string(data), "\r", ""), "\n")
		if m, ok := strings.CutPrefix(strings.TrimSpace(id), n.ns+"."); ok {
			mods = append(mods, m)
		}
	}
	return mods, nil
}

func resultAddr(res types.Result) (netip.Addr, error) {
	cur, err := types100.NewResultFromResult(res)
	if err != nil {
		return netip.Addr{}, err
	}
	for _, ip := range cur.IPs {
		if v4 := ip.Address.IP.To4(); v4 != nil {
			a, _ := netip.AddrFromSlice(v4)
			return a, nil
		}
	}
	return netip.Addr{}, errors.New("the network plugins returned no IPv4 address")
}
