// Package superconfig reads the device's one super-config
// (/etc/edgev2/config.toml) and compiles it into the four services' own
// configuration files and the polkit rules for its [[principal]] entries.
package superconfig

import (
	"os"

	idconfig "github.com/edgev2/edgev2/identity/config"

	"github.com/edgev2/edgev2/internal/config"
	rtconfig "github.com/edgev2/edgev2/modrt/config"
)

// DefaultPath is where the super-config lives.
const DefaultPath = "/etc/edgev2/config.toml"

// Config is the super-config. Build one with Load or Parse: they validate
// every field and every cross-reference, so Compile cannot meet a mistake
// the user could fix (except a user name Compile must resolve to a uid).
type Config struct {
	Hostname       string            `toml:"hostname"`
	Provisioning   Provisioning      `toml:"provisioning"`
	TPM            *TPM              `toml:"tpm"`
	Keys           Keys              `toml:"keys"`
	PreloadedKeys  map[string]string `toml:"preloaded_keys"`
	PreloadedCerts map[string]string `toml:"preloaded_certs"`
	CertIssuance   CertIssuance      `toml:"cert_issuance"`
	EdgeCA         *EdgeCA           `toml:"edge_ca"`
	Cloud          Cloud             `toml:"cloud"`
	Runtime        Runtime           `toml:"runtime"`
	Agent          *Module           `toml:"agent"`
	Modules        []Module          `toml:"modules"`
	Principals     []Principal       `toml:"principal"`
	Workload       *Workload         `toml:"workload"`
	Secrets        *Secrets          `toml:"secrets"`

	path  string
	lines lineIndex
}

// Provisioning is how the device gets its IoT Hub identity.
type Provisioning struct {
	Source string `toml:"source"` // manual | dps | none

	// manual
	ConnectionString string          `toml:"connection_string"`
	IoTHubHostname   string          `toml:"iothub_hostname"`
	DeviceID         string          `toml:"device_id"`
	GatewayHostname  string          `toml:"gateway_hostname"`
	Authentication   *Authentication `toml:"authentication"`

	// dps
	GlobalEndpoint string       `toml:"global_endpoint"`
	IDScope        string       `toml:"id_scope"`
	Payload        string       `toml:"payload"`
	Attestation    *Attestation `toml:"attestation"`
}

// Authentication is a manually provisioned device's credential.
type Authentication struct {
	Method       string     `toml:"method"`        // sas | x509
	DeviceIDPK   *KeySource `toml:"device_id_pk"`  // sas
	IdentityCert string     `toml:"identity_cert"` // x509: file:// URI or certificate id
	IdentityPK   string     `toml:"identity_pk"`   // x509: file://, pkcs11: URI or key id
}

// Attestation is how the device proves itself to DPS.
type Attestation struct {
	Method         string     `toml:"method"` // symmetric_key | x509 | tpm
	RegistrationID string     `toml:"registration_id"`
	SymmetricKey   *KeySource `toml:"symmetric_key"` // individual enrollment
	GroupKey       *KeySource `toml:"group_key"`     // group enrollment (the device key is derived)
	IdentityCert   string     `toml:"identity_cert"`
	IdentityPK     string     `toml:"identity_pk"`
	// OperationalCert has DPS issue the hub certificate (identityd's
	// operational_cert, passed through).
	OperationalCert *idconfig.OperationalCert `toml:"operational_cert"`
}

// KeySource is a symmetric key given inline (base64 value), as a file:// or
// pkcs11: URI, or as the id of a key the Keys service already has.
type KeySource struct {
	Value string `toml:"value"`
	URI   string `toml:"uri"`
	ID    string `toml:"id"`
}

// TPM is the TPM identityd uses for DPS TPM attestation.
type TPM struct {
	Device        string `toml:"device"`
	Address       string `toml:"address"`
	AuthKeyHandle string `toml:"auth_key_handle"`
	// EKTemplate is "tcg" or "azure-sdk" (docs/tpm.md); unset, the one
	// the TPM's EK certificate certifies.
	EKTemplate string `toml:"ek_template"`
	// HierarchyAuthorization holds the hierarchies' auth values if someone
	// set them (tpm2_changeauth); secrets, kept in identityd.toml only.
	HierarchyAuthorization *HierarchyAuthorization `toml:"hierarchy_authorization"`
}

// HierarchyAuthorization is [tpm.hierarchy_authorization].
type HierarchyAuthorization struct {
	Endorsement string `toml:"endorsement"`
	Owner       string `toml:"owner"`
}

// Keys is the Keys service's engine settings.
type Keys struct {
	PKCS11LibPath  string `toml:"pkcs11_lib_path"`
	PKCS11BaseSlot string `toml:"pkcs11_base_slot"`
	PKCS11Sessions int    `toml:"pkcs11_sessions"`
}

// CertIssuance holds the EST and local CA settings and the certificates the
// Certificates service issues and renews.
type CertIssuance struct {
	EST     *EST                 `toml:"est"`
	LocalCA *LocalCA             `toml:"local_ca"`
	Certs   map[string]*Issuance `toml:"certs"`
}

// EST is the default EST server and its authentication.
type EST struct {
	URL                   string     `toml:"url"`
	TrustedCerts          []string   `toml:"trusted_certs"` // file:// URIs or certificate ids
	Username              string     `toml:"username"`
	Password              string     `toml:"password"`
	IdentityCert          string     `toml:"identity_cert"`
	IdentityPK            string     `toml:"identity_pk"`
	BootstrapIdentityCert string     `toml:"bootstrap_identity_cert"`
	BootstrapIdentityPK   string     `toml:"bootstrap_identity_pk"`
	AutoRenew             *AutoRenew `toml:"auto_renew"` // default for est certificates
}

// LocalCA is the CA that method local_ca issues from.
type LocalCA struct {
	Cert string `toml:"cert"` // file:// URI or certificate id
	PK   string `toml:"pk"`   // file://, pkcs11: URI or key id
}

// Issuance is how one certificate is issued and renewed.
type Issuance struct {
	Method        string     `toml:"method"` // est | local_ca | self_signed
	CommonName    string     `toml:"common_name"`
	Organization  string     `toml:"organization"`
	DNSNames      []string   `toml:"dns_names"`
	ExpiryDays    int        `toml:"expiry_days"`
	Expiry        string     `toml:"expiry"`
	KeyID         string     `toml:"key_id"`
	KeyAlgorithms string     `toml:"key_algorithms"`
	URL           string     `toml:"url"`
	CA            bool       `toml:"ca"`
	AutoRenew     *AutoRenew `toml:"auto_renew"`
}

// AutoRenew is a renewal policy.
type AutoRenew struct {
	Threshold string `toml:"threshold"`
	Retry     string `toml:"retry"`
	RotateKey bool   `toml:"rotate_key"`
}

// EdgeCA is the CA that issues modules' server certificates: preloaded
// (cert + pk) or issued (method and the Issuance fields).
type EdgeCA struct {
	Cert       string     `toml:"cert"`
	PK         string     `toml:"pk"`
	Method     string     `toml:"method"`
	CommonName string     `toml:"common_name"`
	ExpiryDays int        `toml:"expiry_days"`
	URL        string     `toml:"url"`
	AutoRenew  *AutoRenew `toml:"auto_renew"`
}

// Cloud tunes how the Identity service talks to DPS and IoT Hub.
type Cloud struct {
	TimeoutS      int      `toml:"timeout_s"`
	RetryMaxS     int      `toml:"retry_max_s"`
	TrustedCerts  []string `toml:"trusted_certs"` // file:// URIs or certificate ids
	TokenTTLS     int      `toml:"token_ttl_s"`
	DPSAPIVersion string   `toml:"dps_api_version"`
}

// Runtime is the Module Runtime's settings.
type Runtime struct {
	ContainerdAddress string   `toml:"containerd_address"`
	Namespace         string   `toml:"namespace"`
	TrustBundle       string   `toml:"trust_bundle"` // certificate id
	RegistryCAFiles   []string `toml:"registry_ca_files"`
	// Policy is the module policy, compiled to modrtd.toml's [policy].
	Policy rtconfig.PolicyConfig `toml:"policy"`

	// Replaced by [runtime.policy]; set, apply refuses with the fix.
	AllowPrivileged       bool     `toml:"allow_privileged"`
	ForbiddenBindPrefixes []string `toml:"forbidden_bind_prefixes"`
	// AllowHostNetwork names the modules that may use NetworkMode "host".
	AllowHostNetwork []string `toml:"allow_host_network"`
	// Network is the default network ([runtime.network], modrtd's [network]).
	Network *RuntimeNetwork `toml:"network"`
}

// RuntimeNetwork is the default network modules join; empty keys take
// modrtd's defaults (docs/config.md).
type RuntimeNetwork struct {
	Name          string   `toml:"name,omitempty"`
	Bridge        string   `toml:"bridge,omitempty"`
	Subnet        string   `toml:"subnet,omitempty"`
	CNIPluginDirs []string `toml:"cni_plugin_dirs,omitempty"`
	StateDir      string   `toml:"state_dir,omitempty"`
}

// Module is a module the runtime keeps running: the agent or one of a local
// deployment's modules.
type Module struct {
	Name string `toml:"name"`
	Spec string `toml:"spec"` // ModuleSpec JSON
}

// Principal grants a local user (or group) access to the services, and
// optionally maps the user to an identity for the Identity service.
type Principal struct {
	User  string `toml:"user"`
	Group string `toml:"group"`

	Keys        []string `toml:"keys"` // org.edgev2.keys.use
	KeysManage  []string `toml:"keys_manage"`
	KeysExport  []string `toml:"keys_export"`
	Certs       []string `toml:"certs"` // org.edgev2.certs.read
	CertsManage []string `toml:"certs_manage"`
	// CertsIssue: issue under matching CAs (org.edgev2.certs.issue), only
	// ids whose subject [cert_issuance.certs.<id>] fixes.
	CertsIssue []string `toml:"certs_issue"`
	// CertsIssueCA: issue CA certificates under matching CAs
	// (org.edgev2.certs.issue-ca).
	CertsIssueCA  []string `toml:"certs_issue_ca"`
	Modules       []string `toml:"modules"` // org.edgev2.modules.read
	ModulesManage []string `toml:"modules_manage"`
	// Identity is "read", "manage" (read + manage of IdentityModules),
	// "reprovision" (read + reprovision) or "all".
	Identity        string   `toml:"identity"`
	IdentityModules []string `toml:"identity_modules"`

	// The Identity service's principal: which identity this uid is.
	UID    *uint32 `toml:"uid"`
	IDType string  `toml:"id_type"` // device | module | local
	Name   string  `toml:"name"`    // identity name; default the user name
}

// Path is the file the config was read from (as given to Load or Parse).
func (c *Config) Path() string { return c.path }

// Load reads and validates the super-config file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &config.Error{File: path, Problem: "cannot read the super-config: " + err.Error(),
			Fix: "create it from " + ExampleFile() + " or pass -c FILE"}
	}
	return Parse(path, data)
}

// Parse validates super-config text; path is only used in error messages.
func Parse(path string, data []byte) (*Config, error) {
	c := &Config{path: path}
	if err := decode(path, data, c); err != nil {
		return nil, err
	}
	c.lines = indexLines(data)
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}
