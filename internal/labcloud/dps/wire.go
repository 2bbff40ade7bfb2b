package dps

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// APIVersions are the api-version values of the device runtime API accepted.
var APIVersions = []string{"2019-03-31", "2021-06-01", "2021-10-01", APIVersionCSRPreview2021, APIVersionCSR}

// DeviceRegistration is the body of PUT .../register.
type DeviceRegistration struct {
	RegistrationID string          `json:"registrationId"`
	Payload        json.RawMessage `json:"payload,omitempty"`
	TPM            *TpmAttestation `json:"tpm,omitempty"`
	// CSR is 2025-07-01-preview's certificate signing request, base64 DER.
	CSR string `json:"csr,omitempty"`
	// ClientCertificateCSR is 2021-11-01-preview's (Embedded C SDK).
	ClientCertificateCSR string `json:"clientCertificateCsr,omitempty"`
}

// TpmAttestation is the register body's "tpm": base64 TPM2B_PUBLIC areas.
type TpmAttestation struct {
	EndorsementKey string `json:"endorsementKey"`
	StorageRootKey string `json:"storageRootKey"`
}

// TpmRegistrationResult is registrationState.tpm: the base64
// authenticationKey blob.
type TpmRegistrationResult struct {
	AuthenticationKey string `json:"authenticationKey"`
}

// TpmChallenge is the body of the TPM challenge (401) as the real
// service sends it: a message, the base64 authenticationKey blob and the
// SAS key name the device signs with. The shape is the service SDK's
// TpmChallenge (Azure/azure-iot-sdk-csharp provisioning/service/src/
// TpmChallenge.cs: message, authenticationKey, keyName = "registration")
// and the 401 bodies the device SDKs parse (azure-iot-sdk-java
// RegisterResponseTPMParser; azure-uhttp-c's captured response).
type TpmChallenge struct {
	Message           string `json:"message"`
	AuthenticationKey string `json:"authenticationKey"`
	KeyName           string `json:"keyName"`
}

// TPM challenge constants, as the real service words them.
const (
	TpmChallengeMessage = "Authorization required, resend request using supplied key"
	TpmChallengeKeyName = "registration"
)

// RegistrationOperationStatus answers register and operation-status lookups.
type RegistrationOperationStatus struct {
	OperationID       string                   `json:"operationId"`
	Status            string                   `json:"status"`
	RegistrationState *DeviceRegistrationState `json:"registrationState,omitempty"`
}

// DeviceRegistrationState is DPS's DeviceRegistrationResult.
type DeviceRegistrationState struct {
	RegistrationID         string                 `json:"registrationId"`
	CreatedDateTimeUtc     string                 `json:"createdDateTimeUtc,omitempty"`
	AssignedHub            string                 `json:"assignedHub,omitempty"`
	DeviceID               string                 `json:"deviceId,omitempty"`
	Status                 string                 `json:"status"`
	Substatus              string                 `json:"substatus,omitempty"`
	ErrorCode              int                    `json:"errorCode,omitempty"`
	ErrorMessage           string                 `json:"errorMessage,omitempty"`
	LastUpdatedDateTimeUtc string                 `json:"lastUpdatedDateTimeUtc,omitempty"`
	Etag                   string                 `json:"etag,omitempty"`
	Payload                json.RawMessage        `json:"payload,omitempty"`
	TPM                    *TpmRegistrationResult `json:"tpm,omitempty"`
	// IssuedCertificateChain is the operational certificate, base64 DER,
	// leaf first (2025-07-01-preview).
	IssuedCertificateChain []string `json:"issuedCertificateChain,omitempty"`
	// IssuedClientCertificate is the same chain in PEM, one string, for a
	// request that used clientCertificateCsr (2021-11-01-preview).
	IssuedClientCertificate string       `json:"issuedClientCertificate,omitempty"`
	TrustBundle             *TrustBundle `json:"trustBundle,omitempty"`
}

// TrustBundle is DPS's trust bundle: CA certificates the device should trust.
type TrustBundle struct {
	ID           string                   `json:"id"`
	Certificates []TrustBundleCertificate `json:"certificates"`
	Etag         string                   `json:"etag,omitempty"`
}

// TrustBundleCertificate is one PEM certificate with its metadata.
type TrustBundleCertificate struct {
	Certificate string              `json:"certificate"`
	Metadata    CertificateMetadata `json:"metadata"`
}

// CertificateMetadata is DPS's X509CertificateInfo.
type CertificateMetadata struct {
	SubjectName      string `json:"subjectName"`
	SHA1Thumbprint   string `json:"sha1Thumbprint"`
	SHA256Thumbprint string `json:"sha256Thumbprint"`
	IssuerName       string `json:"issuerName"`
	NotBeforeUtc     string `json:"notBeforeUtc"`
	NotAfterUtc      string `json:"notAfterUtc"`
	SerialNumber     string `json:"serialNumber"`
	Version          int    `json:"version"`
}

// Registration statuses and substatuses.
const (
	StatusAssigning = "assigning"
	StatusAssigned  = "assigned"

	SubstatusInitialAssignment = "initialAssignment"
	SubstatusReprovisioned     = "reprovisionedToInitialAssignment"
)

// ErrorDetails is DPS's ProvisioningServiceErrorDetails, the body of
// every error: {"errorCode":401002,"trackingId":"<uuid>","message":"...","timestampUtc":"..."}.
type ErrorDetails struct {
	ErrorCode    int    `json:"errorCode"`
	TrackingID   string `json:"trackingId"`
	Message      string `json:"message"`
	TimestampUtc string `json:"timestampUtc"`
}

// Error codes (HTTP status × 1000 + detail), as DPS sends them.
const (
	CodeBadAPIVersion      = 400001
	CodeBadRequest         = 400004
	CodeRegistrationIDDiff = 400005
	CodeBadCSR             = 400012
	CodeUnauthorized       = 401002
	CodeEnrollmentNotFound = 404201
	CodeOperationNotFound  = 404202
	CodeNotFound           = 404001
	CodeMethodNotAllowed   = 405001
	CodeTooLarge           = 413001
	CodeThrottled          = 429001
	CodeInternal           = 500001
)

// dpsTime formats like DPS (.NET, 7 fractional digits, UTC).
func dpsTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.0000000Z") }

func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// newOperationID is shaped like DPS's: "4.<16 hex>.<uuid>".
func newOperationID() string {
	var b [8]byte
	rand.Read(b[:])
	return fmt.Sprintf("4.%x.%s", b, newUUID())
}

// dpsError is an error answer.
type dpsError struct {
	status     int
	code       int
	message    string
	retryAfter int // seconds; 0: no header
	body       any // sent instead of ErrorDetails (the TPM challenge)
}

func (e *dpsError) Error() string { return fmt.Sprintf("%d %d %s", e.status, e.code, e.message) }

func errorf(status, code int, format string, args ...any) *dpsError {
	return &dpsError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

func writeError(w http.ResponseWriter, e *dpsError, now time.Time) {
	body, _ := json.Marshal(ErrorDetails{ErrorCode: e.code, TrackingID: newUUID(), Message: e.message, TimestampUtc: dpsTime(now)})
	if e.body != nil {
		body, _ = json.Marshal(e.body)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(e.retryAfter))
	}
	w.WriteHeader(e.status)
	w.Write(body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(body)
}
