// Package identity is the domain of the Identity service: provisioning the
// device (manual, Azure DPS), its cached identity, and module identities in
// IoT Hub, with every key in the Keys service.
package identity

import (
	"context"
	"crypto"
	"crypto/x509"
	"regexp"
	"time"

	"github.com/edgev2/edgev2/fault"
)

// State is the provisioning state machine:
// unprovisioned → provisioning → provisioned | failed.
type State string

const (
	StateUnprovisioned State = "unprovisioned"
	StateProvisioning  State = "provisioning"
	StateProvisioned   State = "provisioned"
	StateFailed        State = "failed"
)

// Device is the device's identity in IoT Hub. It names its credential by
// id; secrets stay in Keys.
type Device struct {
	HubHostname     string `json:"hub_hostname"`
	DeviceID        string `json:"device_id"`
	GatewayHostname string `json:"gateway_hostname,omitempty"`
	AuthType        string `json:"auth_type"`              // sas | x509
	KeyID           string `json:"key_id,omitempty"`       // sas: signs the device's tokens; x509: the TLS key
	CertID          string `json:"cert_id,omitempty"`      // x509
	DerivedFrom     string `json:"derived_from,omitempty"` // sas via a DPS group key: the registration id the key derives with
	TPM             bool   `json:"tpm,omitempty"`          // sas signed in the TPM with the DPS-issued key ([tpm] auth_key_handle)
}

// ProvisioningInfo describes the last provisioning.
type ProvisioningInfo struct {
	Source         string    `json:"source"`
	Method         string    `json:"method"`
	Endpoint       string    `json:"endpoint,omitempty"`
	IDScope        string    `json:"id_scope,omitempty"`
	RegistrationID string    `json:"registration_id,omitempty"`
	Substatus      string    `json:"substatus,omitempty"`
	ProvisionedAt  time.Time `json:"provisioned_at"`
}

// Module is a module identity this device manages.
type Module struct {
	ModuleID     string `json:"module_id"`
	GenerationID string `json:"generation_id"`
	ETag         string `json:"etag,omitempty"`
	ManagedBy    string `json:"managed_by,omitempty"`
}

// Keys is what identityd needs of the Keys service.
type Keys interface {
	// Sign is HMAC-SHA256 with a symmetric sign key.
	Sign(ctx context.Context, keyID string, data []byte) ([]byte, error)
	// SignDerived is HMAC-SHA256 with HMAC-SHA256(master, derivation).
	SignDerived(ctx context.Context, keyID string, derivation, data []byte) ([]byte, error)
	// ExportDerived is HMAC-SHA256(master, derivation).
	ExportDerived(ctx context.Context, keyID string, derivation []byte) ([]byte, error)
	// CreateKey makes (or finds) a symmetric key; value imports bytes.
	CreateKey(ctx context.Context, keyID, usage string, value []byte) error
	// DeleteKey deletes a key (fault.NotFound if there is none).
	DeleteKey(ctx context.Context, keyID string) error
	// Signer is a crypto.Signer for a key pair (X.509 TLS client auth).
	Signer(ctx context.Context, keyID string) (crypto.Signer, error)
	// CreateKeyPair makes (or finds) a key pair of type algorithm.
	CreateKeyPair(ctx context.Context, keyID, algorithm string) error
}

// Certs is what identityd needs of the Certificates service.
type Certs interface {
	// Get returns a stored chain, leaf first.
	Get(ctx context.Context, id string) ([]*x509.Certificate, error)
	// Ensure returns id, issuing it per certd's policy when missing or due.
	Ensure(ctx context.Context, id string) ([]*x509.Certificate, error)
	// Import stores a chain (leaf first) under id, replacing what was there.
	Import(ctx context.Context, id string, chain []*x509.Certificate) error
}

var moduleIDPattern = regexp.MustCompile(`^[A-Za-z0-9\-:.+%_#*?!(),=@;$']{1,128}$`)

// ValidateModuleID applies IoT Hub's rules for module ids.
func ValidateModuleID(id string) error {
	if !moduleIDPattern.MatchString(id) {
		if id == "" {
			return fault.New(fault.InvalidArgs, "module id is empty")
		}
		if len(id) > 128 {
			return fault.New(fault.InvalidArgs, "module id is %d characters; IoT Hub allows 128", len(id))
		}
		return fault.New(fault.InvalidArgs, "module id %q has characters IoT Hub does not allow (letters, digits and -:.+%%_#*?!(),=@;$' only)", id)
	}
	return nil
}
