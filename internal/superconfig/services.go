package superconfig

// The per-service files as written. These mirror identity.Config and
// modrt.Config with omitempty, so the compiled files hold only what was
// configured; tests parse every compiled file with the daemon's own parser,
// which keeps the two in step. keyd's and certd's files are their own types,
// keys/config.Config and certs/config.Config, whose tags carry omitempty.

type identitydFile struct {
	Hostname     string                `toml:"hostname,omitempty"`
	Homedir      string                `toml:"homedir"`
	Provisioning identitydProvisioning `toml:"provisioning"`
	TPM          *identitydTPM         `toml:"tpm,omitempty"`
	Cloud        *identitydCloud       `toml:"cloud,omitempty"`
	Principals   []identitydPrincipal  `toml:"principal,omitempty"`
}

type identitydProvisioning struct {
	Source                     string                   `toml:"source"`
	ConnectionStringCredential string                   `toml:"connection_string_credential,omitempty"`
	IoTHubHostname             string                   `toml:"iothub_hostname,omitempty"`
	DeviceID                   string                   `toml:"device_id,omitempty"`
	GatewayHostname            string                   `toml:"gateway_hostname,omitempty"`
	GlobalEndpoint             string                   `toml:"global_endpoint,omitempty"`
	IDScope                    string                   `toml:"id_scope,omitempty"`
	Payload                    string                   `toml:"payload,omitempty"`
	Authentication             *identitydAuthentication `toml:"authentication,omitempty"`
	Attestation                *identitydAttestation    `toml:"attestation,omitempty"`
}

type identitydAuthentication struct {
	Method       string `toml:"method"`
	DeviceIDPK   string `toml:"device_id_pk,omitempty"`
	DeviceIDCert string `toml:"device_id_cert,omitempty"`
}

type identitydAttestation struct {
	Method          string                    `toml:"method"`
	RegistrationID  string                    `toml:"registration_id,omitempty"`
	SymmetricKey    string                    `toml:"symmetric_key,omitempty"`
	GroupKey        string                    `toml:"group_key,omitempty"`
	IdentityCert    string                    `toml:"identity_cert,omitempty"`
	IdentityPK      string                    `toml:"identity_pk,omitempty"`
	OperationalCert *identitydOperationalCert `toml:"operational_cert,omitempty"`
}

type identitydOperationalCert struct {
	CertID         string `toml:"cert_id"`
	KeyID          string `toml:"key_id,omitempty"`
	KeyType        string `toml:"key_type,omitempty"`
	RenewThreshold string `toml:"renew_threshold,omitempty"`
	TrustBundleID  string `toml:"trust_bundle_id,omitempty"`
}

type identitydTPM struct {
	Device                 string                  `toml:"device,omitempty"`
	Address                string                  `toml:"address,omitempty"`
	AuthKeyHandle          string                  `toml:"auth_key_handle,omitempty"`
	EKTemplate             string                  `toml:"ek_template,omitempty"`
	HierarchyAuthorization *identitydHierarchyAuth `toml:"hierarchy_authorization,omitempty"`
}

type identitydHierarchyAuth struct {
	Endorsement string `toml:"endorsement,omitempty"`
	Owner       string `toml:"owner,omitempty"`
}

type identitydCloud struct {
	TimeoutS      int      `toml:"timeout_s,omitempty"`
	RetryMaxS     int      `toml:"retry_max_s,omitempty"`
	TrustedCerts  []string `toml:"trusted_certs,omitempty"`
	TokenTTLS     int      `toml:"token_ttl_s,omitempty"`
	DPSAPIVersion string   `toml:"dps_api_version,omitempty"`
}

type identitydPrincipal struct {
	Name   string `toml:"name"`
	UID    uint32 `toml:"uid"`
	IDType string `toml:"id_type"`
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
