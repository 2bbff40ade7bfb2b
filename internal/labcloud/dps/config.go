package dps

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/edgev2/edgev2/internal/labcloud/hub"
	"github.com/edgev2/edgev2/internal/labcloud/labconfig"
)

// Config is the [dps] table of edgev2-labcloud's configuration file.
type Config struct {
	// IDScope is the first path segment of the device API. Default "0ne00000001".
	IDScope string `toml:"id_scope"`
	// AssignedHub is the hub host name devices are assigned to. Default:
	// the labcloud's hub (its hostname, itself defaulting to the listener).
	AssignedHub string `toml:"assigned_hub"`
	// AssigningPolls is how many operation-status polls answer "assigning"
	// before one answers "assigned".
	AssigningPolls int `toml:"assigning_polls"`
	// ThrottleFirst: the first N requests of each registration id get
	// 429 with Retry-After.
	ThrottleFirst int `toml:"throttle_first"`
	// RetryAfter is the Retry-After of 202 and 429 answers, in seconds. Default 1.
	RetryAfter int `toml:"retry_after"`
	// ZeroRetryAfter answers Retry-After: 0 (poll again at once) instead
	// of RetryAfter, as a DPS that assigns at once may.
	ZeroRetryAfter bool `toml:"zero_retry_after"`
	// Enrollments are the individual and group enrollments.
	Enrollments []Enrollment `toml:"enrollments"`
}

// Attestation mechanisms.
const (
	AttestationSymmetricKey = "symmetric_key"
	AttestationX509         = "x509"
	AttestationTPM          = "tpm"
)

// Enrollment is one [[dps.enrollments]] entry: individual (RegistrationID)
// or group (GroupID).
type Enrollment struct {
	RegistrationID string `toml:"registration_id"`
	GroupID        string `toml:"group_id"`
	Attestation    string `toml:"attestation"` // symmetric_key | x509 | tpm
	// Base64 keys (symmetric_key). For a group, a device's key is
	// base64(HMAC-SHA256(base64decode(key), registrationId)).
	PrimaryKey   string `toml:"primary_key"`
	SecondaryKey string `toml:"secondary_key"`
	// CertificateFile (x509) is PEM: the device certificate of an individual
	// enrollment, the CA certificate(s) of a group. Relative paths are
	// relative to the configuration file.
	CertificateFile string `toml:"certificate_file"`
	// CertificateThumbprint (x509, individual) may replace CertificateFile:
	// the device certificate's SHA-1 or SHA-256 thumbprint in hex.
	CertificateThumbprint string `toml:"certificate_thumbprint"`
	// EndorsementKey (tpm, individual) is the TPM's EK public area:
	// base64 of its TPM2B_PUBLIC, as the Azure portal takes it and
	// identityd logs it (`tpm2_readpublic -c 0x81010001 -f tss -o ek.pub;
	// base64 -w0 ek.pub`).
	EndorsementKey string `toml:"endorsement_key"`
	// EndorsementKeyFile (tpm) may replace EndorsementKey: a file holding
	// the TPM2B_PUBLIC (binary or base64), or a PEM RSA public key (the
	// EK made from the TCG default template). Relative paths are taken
	// from the working directory (the labcloud command resolves only
	// certificate_file against the configuration file's directory).
	EndorsementKeyFile string `toml:"endorsement_key_file"`
	// DeviceID is the hub device id of an individual enrollment. Default:
	// the registration id (always so for groups).
	DeviceID string `toml:"device_id"`
	// Disabled enrollments are refused like DPS refuses them.
	Disabled bool `toml:"disabled"`
	// EdgeEnabled marks devices it creates as IoT Edge devices.
	EdgeEnabled bool `toml:"edge_enabled"`
	// CredentialPolicy, when set, lets the enrollment's devices ask for an
	// operational certificate with their registration; the hub then knows
	// them by that certificate (certificateAuthority), not the onboarding
	// credential.
	CredentialPolicy *CredentialPolicy `toml:"credential_policy"`
}

func (e Enrollment) isGroup() bool { return e.GroupID != "" }

// ConfigError is a configuration mistake in the [dps] table.
type ConfigError = labconfig.Error

// DefaultIDScope is the id scope when none is configured.
const DefaultIDScope = "0ne00000001"

func (c Config) withDefaults() Config {
	if c.IDScope == "" {
		c.IDScope = DefaultIDScope
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = 1
	}
	return c
}

// registrationIDPattern is DPS's rule: up to 128 lower-case alphanumerics
// and - . _ :, no special character first or last.
var registrationIDPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9\-._:]{0,126}[a-z0-9])?$`)

// ValidRegistrationID reports whether id is a valid DPS registration id
// (case-insensitive: DPS lower-cases it).
func ValidRegistrationID(id string) bool {
	return registrationIDPattern.MatchString(strings.ToLower(id))
}

var scopePattern = regexp.MustCompile(`^[A-Za-z0-9]{1,64}$`)

var thumbprintPattern = regexp.MustCompile(`^([0-9A-Fa-f]{40}|[0-9A-Fa-f]{64})$`)

// Validate reports the first mistake in c.
func (c Config) Validate() error {
	if c.IDScope != "" && !scopePattern.MatchString(c.IDScope) {
		return &ConfigError{Table: "dps", Key: "id_scope", Problem: fmt.Sprintf("%q is not alphanumeric", c.IDScope), Fix: `use something like "0ne00000001"`}
	}
	if c.AssignedHub != "" {
		if err := hub.CheckHostname(c.AssignedHub); err != nil {
			return &ConfigError{Table: "dps", Key: "assigned_hub", Problem: err.Error(), Fix: `use the hub's bare name, like "myhub.azure-devices.net"`}
		}
	}
	for k, v := range map[string]int{"assigning_polls": c.AssigningPolls, "throttle_first": c.ThrottleFirst, "retry_after": c.RetryAfter} {
		if v < 0 {
			return &ConfigError{Table: "dps", Key: k, Problem: "negative", Fix: "use 0 or more"}
		}
	}
	seen := map[string]bool{}
	for i, e := range c.Enrollments {
		key := fmt.Sprintf("enrollments[%d]", i)
		if (e.RegistrationID == "") == (e.GroupID == "") {
			return &ConfigError{Table: "dps", Key: key, Problem: "needs exactly one of registration_id (individual) and group_id (group)", Fix: "set one of them"}
		}
		id := strings.ToLower(e.RegistrationID + e.GroupID)
		if e.RegistrationID != "" && !ValidRegistrationID(e.RegistrationID) {
			return &ConfigError{Table: "dps", Key: key + ".registration_id", Problem: fmt.Sprintf("%q is not a DPS registration id", e.RegistrationID), Fix: "use lower-case letters, digits and - . _ :"}
		}
		kind := "individual:"
		if e.isGroup() {
			kind = "group:"
		}
		if seen[kind+id] {
			return &ConfigError{Table: "dps", Key: key, Problem: fmt.Sprintf("%q is enrolled twice", id), Fix: "keep one enrollment per id"}
		}
		seen[kind+id] = true
		if e.DeviceID != "" && (e.isGroup() || !hub.ValidID(e.DeviceID)) {
			return &ConfigError{Table: "dps", Key: key + ".device_id", Problem: "only an individual enrollment may set a valid IoT Hub device id", Fix: "remove it or fix it"}
		}
		if p := e.CredentialPolicy; p != nil {
			if err := p.validate(key + ".credential_policy"); err != nil {
				return err
			}
			if e.DeviceID != "" && !strings.EqualFold(e.DeviceID, e.RegistrationID) {
				return &ConfigError{Table: "dps", Key: key + ".device_id", Problem: "a device with an issued certificate is known to the hub by the certificate's CN, the registration id", Fix: "remove device_id or the credential policy"}
			}
		}
		switch e.Attestation {
		case AttestationSymmetricKey:
			if e.PrimaryKey == "" {
				return &ConfigError{Table: "dps", Key: key + ".primary_key", Problem: "missing", Fix: "use `openssl rand -base64 32`"}
			}
			for name, v := range map[string]string{"primary_key": e.PrimaryKey, "secondary_key": e.SecondaryKey} {
				if v == "" {
					continue
				}
				if _, err := hub.DecodeKey(v); err != nil {
					return &ConfigError{Table: "dps", Key: key + "." + name, Problem: err.Error(), Fix: "use `openssl rand -base64 32`"}
				}
			}
			if e.CertificateFile != "" || e.CertificateThumbprint != "" {
				return &ConfigError{Table: "dps", Key: key, Problem: "a symmetric_key enrollment takes no certificate", Fix: `remove certificate_file or use attestation = "x509"`}
			}
			if e.EndorsementKey != "" || e.EndorsementKeyFile != "" {
				return &ConfigError{Table: "dps", Key: key, Problem: "a symmetric_key enrollment takes no endorsement key", Fix: `remove it or use attestation = "tpm"`}
			}
		case AttestationTPM:
			if e.isGroup() {
				return &ConfigError{Table: "dps", Key: key + ".group_id", Problem: "TPM attestation has individual enrollments only (as in Azure DPS)", Fix: "enroll each TPM with registration_id and endorsement_key"}
			}
			if (e.EndorsementKey == "") == (e.EndorsementKeyFile == "") {
				return &ConfigError{Table: "dps", Key: key + ".endorsement_key", Problem: "a tpm enrollment needs exactly one of endorsement_key and endorsement_key_file", Fix: "set endorsement_key to base64 of the EK's TPM2B_PUBLIC"}
			}
			if e.PrimaryKey != "" || e.SecondaryKey != "" || e.CertificateFile != "" || e.CertificateThumbprint != "" {
				return &ConfigError{Table: "dps", Key: key, Problem: "a tpm enrollment takes no keys or certificates: DPS issues the key", Fix: "remove them"}
			}
			if e.EndorsementKey != "" {
				if _, err := parseEndorsementKey([]byte(e.EndorsementKey)); err != nil {
					return &ConfigError{Table: "dps", Key: key + ".endorsement_key", Problem: err.Error(), Fix: "use base64 of the EK's TPM2B_PUBLIC (tpm2_readpublic -c 0x81010001 -f tss -o ek.pub; base64 -w0 ek.pub)"}
				}
			}
		case AttestationX509:
			if e.EndorsementKey != "" || e.EndorsementKeyFile != "" {
				return &ConfigError{Table: "dps", Key: key, Problem: "an x509 enrollment takes no endorsement key", Fix: `remove it or use attestation = "tpm"`}
			}
			if e.PrimaryKey != "" || e.SecondaryKey != "" {
				return &ConfigError{Table: "dps", Key: key, Problem: "an x509 enrollment takes no keys", Fix: `remove the keys or use attestation = "symmetric_key"`}
			}
			if e.CertificateFile == "" && (e.isGroup() || e.CertificateThumbprint == "") {
				return &ConfigError{Table: "dps", Key: key + ".certificate_file", Problem: "missing", Fix: "name the PEM device certificate (individual) or CA certificate (group)"}
			}
			if e.CertificateThumbprint != "" && (e.isGroup() || !thumbprintPattern.MatchString(strings.ReplaceAll(e.CertificateThumbprint, ":", ""))) {
				return &ConfigError{Table: "dps", Key: key + ".certificate_thumbprint", Problem: "only an individual enrollment takes a SHA-1 or SHA-256 hex thumbprint", Fix: "use `openssl x509 -noout -fingerprint -sha256`"}
			}
		default:
			return &ConfigError{Table: "dps", Key: key + ".attestation", Problem: fmt.Sprintf("%q is not symmetric_key, x509 or tpm", e.Attestation), Fix: `use "symmetric_key", "x509" or "tpm"`}
		}
	}
	return nil
}

// pollRetryAfter is the Retry-After of a 202 (an operation in progress).
func (c Config) pollRetryAfter() int {
	if c.ZeroRetryAfter {
		return 0
	}
	return c.RetryAfter
}
