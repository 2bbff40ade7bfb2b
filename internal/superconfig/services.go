package superconfig

// The per-service files as written. This mirrors modrt.Config with
// omitempty, so the compiled file holds only what was configured; tests parse
// every compiled file with the daemon's own parser, which keeps the two in
// step. keyd's, certd's and identityd's files are their own types
// (keys/config, certs/config, identity/config), whose tags carry omitempty.

type modrtdFile struct {
	Homedir         string          `toml:"homedir"`
	Containerd      string          `toml:"containerd_address,omitempty"`
	Namespace       string          `toml:"namespace,omitempty"`
	TrustBundle     string          `toml:"trust_bundle,omitempty"`
	EdgeCACert      string          `toml:"edge_ca_cert,omitempty"`
	EdgeCAKey       string          `toml:"edge_ca_key,omitempty"`
	RegistryCAFiles []string        `toml:"registry_ca_files,omitempty"`
	Policy          *modrtdPolicy   `toml:"policy,omitempty"`
	Agent           *modrtdModule   `toml:"agent,omitempty"`
	Modules         []modrtdModule  `toml:"modules,omitempty"`
	Network         *RuntimeNetwork `toml:"network,omitempty"`
	Workload        *modrtdWorkload `toml:"workload,omitempty"`
}

type modrtdPolicy struct {
	ReadOnlyBinds    []string      `toml:"read_only_binds,omitempty"`
	Allow            []modrtdGrant `toml:"allow,omitempty"`
	AllowHostNetwork []string      `toml:"allow_host_network,omitempty"`
}

type modrtdGrant struct {
	Modules       []string `toml:"modules,omitempty"`
	Images        []string `toml:"images,omitempty"`
	CapAdd        []string `toml:"cap_add,omitempty"`
	Binds         []string `toml:"binds,omitempty"`
	ReadOnlyBinds []string `toml:"read_only_binds,omitempty"`
	Privileged    bool     `toml:"privileged,omitempty"`
	HostPID       bool     `toml:"host_pid,omitempty"`
}

type modrtdModule struct {
	Name                       string `toml:"name"`
	Spec                       string `toml:"spec,multiline"`
	RegistryPasswordCredential string `toml:"registry_password_credential,omitempty"`
}
