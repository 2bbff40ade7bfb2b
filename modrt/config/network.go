package config

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/edgev2/edgev2/modrt/modspec"
)

// Default network settings ([network] in modrtd.toml).
const (
	DefaultNetworkName     = modspec.DefaultNetworkName // what edgeAgent deployments name
	DefaultNetworkBridge   = "edgev2br0"
	DefaultNetworkSubnet   = "10.213.0.0/24"
	DefaultCNIPluginDir    = "/usr/lib/cni"
	DefaultNetworkStateDir = "/run/edgev2/network"
)

// NetworkConfig is modrtd.toml's [network].
type NetworkConfig struct {
	Name       string   `toml:"name,omitempty"`            // default "azure-iot-edge"
	Bridge     string   `toml:"bridge,omitempty"`          // host bridge device; default "edgev2br0"
	Subnet     string   `toml:"subnet,omitempty"`          // IPv4 CIDR, private; default 10.213.0.0/24
	PluginDirs []string `toml:"cni_plugin_dirs,omitempty"` // default /usr/lib/cni
	StateDir   string   `toml:"state_dir,omitempty"`       // IPAM leases and CNI cache; default /run/edgev2/network
}

// validBridgeName: a Linux interface name.
func validBridgeName(s string) bool {
	if s == "" || len(s) > 15 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// SetDefaults fills and checks [network]; path names the file for errors.
func (c *NetworkConfig) SetDefaults(path string) error {
	if c.Name == "" {
		c.Name = DefaultNetworkName
	}
	if c.Bridge == "" {
		c.Bridge = DefaultNetworkBridge
	}
	if c.Subnet == "" {
		c.Subnet = DefaultNetworkSubnet
	}
	if len(c.PluginDirs) == 0 {
		c.PluginDirs = []string{DefaultCNIPluginDir}
	}
	if c.StateDir == "" {
		c.StateDir = DefaultNetworkStateDir
	}
	if err := modspec.ValidateName(c.Name); err != nil || c.Name == modspec.NetModeHost || c.Name == modspec.NetModeNone {
		return &ConfigError{File: path, Key: "network.name", Problem: fmt.Sprintf("%q is not a usable network name", c.Name), Fix: `use letters, digits, '.', '_' and '-' (not "host" or "none"), e.g. "azure-iot-edge"`}
	}
	if !validBridgeName(c.Bridge) {
		return &ConfigError{File: path, Key: "network.bridge", Problem: fmt.Sprintf("%q is not a Linux interface name", c.Bridge), Fix: "use at most 15 letters, digits, '-', '_' or '.'"}
	}
	pfx, err := netip.ParsePrefix(c.Subnet)
	if err != nil || !pfx.Addr().Is4() || !pfx.Addr().IsPrivate() || pfx.Bits() < 8 || pfx.Bits() > 28 || pfx.Masked() != pfx {
		return &ConfigError{File: path, Key: "network.subnet", Problem: fmt.Sprintf("%q is not a private IPv4 network of /8 to /28", c.Subnet), Fix: `use e.g. "10.213.0.0/24" (a range no other network of the device uses)`}
	}
	for i, d := range append(c.PluginDirs, c.StateDir) {
		if !strings.HasPrefix(d, "/") {
			key := "network.state_dir"
			if i < len(c.PluginDirs) {
				key = fmt.Sprintf("network.cni_plugin_dirs[%d]", i)
			}
			return &ConfigError{File: path, Key: key, Problem: fmt.Sprintf("%q is not an absolute path", d), Fix: "use an absolute path"}
		}
	}
	return nil
}

// Validate checks [network] (empty keys take the defaults); the error's
// Key is "network.<key>".
func (c NetworkConfig) Validate() *ConfigError {
	if err := c.SetDefaults(""); err != nil {
		return err.(*ConfigError)
	}
	return nil
}
