package superconfig

// The per-service files as written. These mirror keys.Config, certs.Config
// and identity.Config with omitempty (modrtd.toml is modrt/config.Config itself), so the compiled files
// hold only what was configured; tests parse every compiled file with the
// daemon's own parser, which keeps the two in step.

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
