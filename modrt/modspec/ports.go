package modspec

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/edgev2/edgev2/fault"
)

// NetworkMode is the module's network: NetModeHost, NetModeNone or
// NetModeDefault (NetworkMode empty or naming the default network,
// defaultNet, "azure-iot-edge" when empty).
func (s *Spec) NetworkMode(defaultNet string) (string, error) {
	defaultNet = cmp.Or(defaultNet, DefaultNetworkName)
	switch nm := s.Config.Settings.CreateOptions.HostConfig.NetworkMode; nm {
	case NetModeHost, NetModeNone:
		return nm, nil
	case "", defaultNet:
		return NetModeDefault, nil
	default:
		return "", fault.New(fault.InvalidArgs, "module %s: createOptions.HostConfig.NetworkMode %s is not a network of this device: use %s (the default), \"host\" or \"none\"", s.Name, Quote(nm), Quote(defaultNet))
	}
}

// PortMappings are the ports createOptions.HostConfig.PortBindings publish
// (none for a module on the host's network, which needs none).
func (s *Spec) PortMappings() ([]PortMapping, error) {
	if s.Config.Settings.CreateOptions.HostConfig.NetworkMode == NetModeHost {
		return nil, nil
	}
	return s.Config.Settings.CreateOptions.HostConfig.portMappings()
}

// portMappings reads Docker's PortBindings, {"80/tcp": [{"HostIp": "",
// "HostPort": "8080"}]}: a host port is required (no random ports), the
// host address, when given, is an IPv4 address that is not loopback
// (loopback is never forwarded into modules).
func (hc *HostConfig) portMappings() ([]PortMapping, error) {
	if zeroJSON(hc.PortBindings) {
		return nil, nil
	}
	const f = "createOptions.HostConfig.PortBindings"
	var raw map[string][]struct {
		HostIP   string `json:"HostIp"`
		HostPort string `json:"HostPort"`
	}
	if err := json.Unmarshal(hc.PortBindings, &raw); err != nil {
		return nil, fault.New(fault.InvalidArgs, `%s must be an object like {"80/tcp": [{"HostPort": "8080"}]}`, f)
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []PortMapping
	seen := map[string]bool{}
	for _, k := range keys {
		cport, proto, err := parsePortProto(k)
		if err != nil {
			return nil, fault.New(fault.InvalidArgs, "%s %s: %s", f, Quote(k), err)
		}
		for i, b := range raw[k] {
			at := fmt.Sprintf("%s %s[%d]", f, Quote(k), i)
			hport, err := strconv.Atoi(b.HostPort)
			if err != nil || hport < 1 || hport > 65535 {
				return nil, fault.New(fault.InvalidArgs, "%s: HostPort %s is not a port number (1-65535; random ports are not supported)", at, Quote(b.HostPort))
			}
			hostIP := b.HostIP
			if hostIP == "0.0.0.0" {
				hostIP = ""
			}
			if hostIP != "" {
				a, err := netip.ParseAddr(hostIP)
				switch {
				case err != nil || !a.Is4():
					return nil, fault.New(fault.InvalidArgs, "%s: HostIp %s is not an IPv4 address", at, Quote(b.HostIP))
				case a.IsLoopback():
					return nil, fault.New(fault.InvalidArgs, "%s: HostIp %s is loopback, which is never forwarded into modules", at, Quote(b.HostIP))
				}
			}
			pm := PortMapping{HostPort: hport, ContainerPort: cport, Protocol: proto, HostIP: hostIP}
			if seen[pm.HostKey()] {
				return nil, fault.New(fault.InvalidArgs, "%s: host port %d/%s is bound twice", at, hport, proto)
			}
			seen[pm.HostKey()] = true
			out = append(out, pm)
		}
	}
	return out, nil
}

// parsePortProto reads "80", "80/tcp" or "53/udp".
func parsePortProto(s string) (int, string, error) {
	p, proto, ok := strings.Cut(s, "/")
	if !ok {
		proto = "tcp"
	}
	proto = strings.ToLower(proto)
	if proto != "tcp" && proto != "udp" {
		return 0, "", fmt.Errorf("protocol %s is not tcp or udp", Quote(proto))
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return 0, "", fmt.Errorf("%s is not a port number (1-65535)", Quote(p))
	}
	return n, proto, nil
}

// DefaultNetworkName is the default network's name unless [network] names
// another: what edgeAgent deployments name.
const DefaultNetworkName = "azure-iot-edge"

// Network modes a module is in (the runtime records them in its
// container's labels).
const (
	NetModeDefault = "default"
	NetModeHost    = "host"
	NetModeNone    = "none"
)

// PortMapping is one published port, in the portmap plugin's
// portMappings capability shape.
type PortMapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// HostKey names the host side of the mapping (protocol, address, port):
// two mappings with one key cannot both be published.
func (p PortMapping) HostKey() string {
	return fmt.Sprintf("%s/%s:%d", p.Protocol, p.HostIP, p.HostPort)
}
