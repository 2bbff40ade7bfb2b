package modrt

import (
	"fmt"
	"strings"

	"github.com/edgev2/edgev2/internal/config"
)

// Config is modrtd's configuration file (/etc/edgev2/modrtd.toml).
type Config struct {
	Homedir    string `toml:"homedir"`
	Containerd string `toml:"containerd_address"` // default /run/containerd/containerd.sock
	Namespace  string `toml:"namespace"`          // default edgev2
	// MgmtSocket is the management API's Unix socket (edgeAgent, tools).
	MgmtSocket string `toml:"mgmt_socket"` // default <homedir>/mgmt/mgmt.sock; its directory is bound into the agent
	// TrustBundle is the Certificates id of the CAs the workload API's
	// trust-bundle endpoint serves to modules.
	TrustBundle string `toml:"trust_bundle"`
	// EdgeCACert and EdgeCAKey name the edge CA (in Certificates and Keys)
	// that issues modules' server certificates; its certificate is added to
	// the trust bundle. Empty: no server certificates.
	EdgeCACert string `toml:"edge_ca_cert"`
	EdgeCAKey  string `toml:"edge_ca_key"`
	// RegistryCAFiles are PEM files of CAs registries' TLS certificates may
	// chain to (besides the system roots).
	RegistryCAFiles []string     `toml:"registry_ca_files"`
	Policy          PolicyConfig `toml:"policy"`
	// Agent is the edgeAgent module, created and kept running as
	// aziot-edged does; Modules are a local deployment kept running without
	// any cloud agent.
	Agent   *LocalModule  `toml:"agent"`
	Modules []LocalModule `toml:"modules"`
}

// LocalModule is a module the runtime keeps by itself.
type LocalModule struct {
	Name string `toml:"name"`
	Spec string `toml:"spec"` // ModuleSpec JSON
}

// PolicyConfig limits what module specs may ask for.
type PolicyConfig struct {
	ForbiddenBindPrefixes []string `toml:"forbidden_bind_prefixes"`
	AllowPrivileged       bool     `toml:"allow_privileged"`
}

// ConfigError names the file, key and fix of a configuration mistake.
type ConfigError = config.Error

// DefaultForbiddenBinds are host paths no module may bind: the services'
// state and configuration, the bus, containerd itself.
var DefaultForbiddenBinds = []string{"/etc/edgev2", "/var/lib/edgev2", "/run/dbus", "/var/run/dbus",
	"/run/containerd", "/var/lib/containerd", "/etc/shadow", "/etc/polkit-1", "/proc", "/sys"}

// LoadConfig reads and validates a modrtd config file.
func LoadConfig(path string) (*Config, error) {
	data, err := config.Read(path)
	if err != nil {
		return nil, err
	}
	return ParseConfig(path, data)
}

// ParseConfig parses and validates modrtd config text.
func ParseConfig(path string, data []byte) (*Config, error) {
	var c Config
	if err := config.Decode(path, data, &c, "docs/modules.md"); err != nil {
		return nil, err
	}
	if c.Homedir == "" || !strings.HasPrefix(c.Homedir, "/") {
		return nil, &ConfigError{File: path, Key: "homedir", Problem: "not an absolute path", Fix: `set homedir = "/var/lib/edgev2/modrtd"`}
	}
	if c.Containerd == "" {
		c.Containerd = "/run/containerd/containerd.sock"
	}
	if c.MgmtSocket == "" {
		c.MgmtSocket = c.Homedir + "/mgmt/mgmt.sock"
	}
	if c.Namespace == "" {
		c.Namespace = "edgev2"
	}
	if c.Policy.ForbiddenBindPrefixes == nil {
		c.Policy.ForbiddenBindPrefixes = DefaultForbiddenBinds
	}
	if c.Agent != nil {
		if c.Agent.Name == "" {
			c.Agent.Name = "edgeAgent"
		}
		c.Modules = append([]LocalModule{*c.Agent}, c.Modules...)
	}
	seen := map[string]bool{}
	for i, m := range c.Modules {
		key := fmt.Sprintf("modules[%d]", i)
		if err := ValidateName(m.Name); err != nil {
			return nil, &ConfigError{File: path, Key: key + ".name", Problem: err.Error(), Fix: "use [A-Za-z0-9][A-Za-z0-9_.-]*"}
		}
		if seen[m.Name] {
			return nil, &ConfigError{File: path, Key: key + ".name", Problem: fmt.Sprintf("module %q is listed twice", m.Name), Fix: "keep one"}
		}
		seen[m.Name] = true
		if _, err := ParseSpec([]byte(m.Spec)); err != nil {
			return nil, &ConfigError{File: path, Key: key + ".spec", Problem: err.Error(), Fix: "write a ModuleSpec JSON (docs/modules.md)"}
		}
	}
	for _, p := range c.Policy.ForbiddenBindPrefixes {
		if !strings.HasPrefix(p, "/") {
			return nil, &ConfigError{File: path, Key: "policy.forbidden_bind_prefixes", Problem: p + " is not an absolute path", Fix: "use absolute paths"}
		}
	}
	return &c, nil
}
