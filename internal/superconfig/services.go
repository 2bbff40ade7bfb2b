package superconfig

// The per-service files as written. These mirror keys.Config, certs.Config
// and modrt.Config with omitempty, so the compiled files hold only what was
// configured; tests parse every compiled file with the daemon's own parser,
// which keeps the two in step. identityd's is identity/config.Config itself.

type keydFile struct {
	Homedir        string            `toml:"homedir"`
	PKCS11LibPath  string            `toml:"pkcs11_lib_path,omitempty"`
	PKCS11BaseSlot string            `toml:"pkcs11_base_slot,omitempty"`
	PKCS11Sessions int               `toml:"pkcs11_sessions,omitempty"`
	PreloadedKeys  map[string]string `toml:"preloaded_keys,omitempty"`
}

type certdFile struct {
	Homedir        string                    `toml:"homedir"`
	PreloadedCerts map[string]string         `toml:"preloaded_certs,omitempty"`
	EST            *certdEST                 `toml:"est,omitempty"`
	Issuance       map[string]*certdIssuance `toml:"cert_issuance,omitempty"`
	LocalCAs       map[string]*certdLocalCA  `toml:"local_ca,omitempty"`
}

// certdLocalCA binds a CA certificate id to the key that signs for it.
type certdLocalCA struct {
	Key string `toml:"key"`
}

type certdEST struct {
	URL                   string   `toml:"url,omitempty"`
	TrustedCerts          []string `toml:"trusted_certs,omitempty"`
	Username              string   `toml:"username,omitempty"`
	PasswordCredential    string   `toml:"password_credential,omitempty"`
	IdentityCert          string   `toml:"identity_cert,omitempty"`
	IdentityKey           string   `toml:"identity_key,omitempty"`
	BootstrapIdentityCert string   `toml:"bootstrap_identity_cert,omitempty"`
	BootstrapIdentityKey  string   `toml:"bootstrap_identity_key,omitempty"`
}

type certdIssuance struct {
	Method        string          `toml:"method"`
	KeyID         string          `toml:"key_id,omitempty"`
	KeyAlgorithms string          `toml:"key_algorithms,omitempty"`
	CommonName    string          `toml:"common_name,omitempty"`
	Organization  string          `toml:"organization,omitempty"`
	DNSNames      []string        `toml:"dns_names,omitempty"`
	ExpiryDays    int             `toml:"expiry_days,omitempty"`
	Expiry        string          `toml:"expiry,omitempty"`
	URL           string          `toml:"url,omitempty"`
	IssuerCert    string          `toml:"issuer_cert,omitempty"`
	IssuerKey     string          `toml:"issuer_key,omitempty"`
	CA            bool            `toml:"ca,omitempty"`
	AutoRenew     *certdAutoRenew `toml:"auto_renew,omitempty"`
}

type certdAutoRenew struct {
	Threshold string `toml:"threshold,omitempty"`
	Retry     string `toml:"retry,omitempty"`
	RotateKey bool   `toml:"rotate_key,omitempty"`
}

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
