package hub

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"time"
)

// Authentication types of IoT Hub identities.
const (
	AuthSAS                  = "sas"
	AuthSelfSigned           = "selfSigned"
	AuthCertificateAuthority = "certificateAuthority"
	AuthNone                 = "none"
)

// Authentication is IoT Hub's AuthenticationMechanism.
type Authentication struct {
	SymmetricKey   *SymmetricKey   `json:"symmetricKey,omitempty"`
	X509Thumbprint *X509Thumbprint `json:"x509Thumbprint,omitempty"`
	Type           string          `json:"type"`
}

// SymmetricKey holds base64 keys.
type SymmetricKey struct {
	PrimaryKey   string `json:"primaryKey"`
	SecondaryKey string `json:"secondaryKey"`
}

// X509Thumbprint holds hex SHA-1 or SHA-256 certificate thumbprints.
type X509Thumbprint struct {
	PrimaryThumbprint   string `json:"primaryThumbprint"`
	SecondaryThumbprint string `json:"secondaryThumbprint"`
}

// Capabilities of a device.
type Capabilities struct {
	IotEdge bool `json:"iotEdge"`
}

// Device is IoT Hub's device identity, as the registry REST API sends it.
type Device struct {
	DeviceID                   string         `json:"deviceId"`
	GenerationID               string         `json:"generationId"`
	Etag                       string         `json:"etag"`
	ConnectionState            string         `json:"connectionState"`
	Status                     string         `json:"status"`
	StatusReason               *string        `json:"statusReason"`
	ConnectionStateUpdatedTime string         `json:"connectionStateUpdatedTime"`
	StatusUpdatedTime          string         `json:"statusUpdatedTime"`
	LastActivityTime           string         `json:"lastActivityTime"`
	CloudToDeviceMessageCount  int            `json:"cloudToDeviceMessageCount"`
	Authentication             Authentication `json:"authentication"`
	Capabilities               Capabilities   `json:"capabilities"`
}

// Module is IoT Hub's module identity, as the registry REST API sends it.
type Module struct {
	ModuleID                   string         `json:"moduleId"`
	ManagedBy                  string         `json:"managedBy"`
	DeviceID                   string         `json:"deviceId"`
	GenerationID               string         `json:"generationId"`
	Etag                       string         `json:"etag"`
	ConnectionState            string         `json:"connectionState"`
	ConnectionStateUpdatedTime string         `json:"connectionStateUpdatedTime"`
	LastActivityTime           string         `json:"lastActivityTime"`
	CloudToDeviceMessageCount  int            `json:"cloudToDeviceMessageCount"`
	Authentication             Authentication `json:"authentication"`
}

// neverTime is what IoT Hub sends for a time that has not happened yet.
const neverTime = "0001-01-01T00:00:00Z"

// hubTime formats like IoT Hub (.NET, 7 fractional digits, UTC).
func hubTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.0000000Z") }

// Error codes of IoT Hub's REST API (the iothub-errorcode header).
const (
	codeUnauthorized     = "IotHubUnauthorizedAccess"
	codeDeviceNotFound   = "DeviceNotFound"
	codeModuleNotFound   = "ModuleNotFound"
	codeDeviceExists     = "DeviceAlreadyExists"
	codeModuleExists     = "ModuleAlreadyExistsOnDevice"
	codePrecondition     = "PreconditionFailed"
	codeArgumentInvalid  = "ArgumentInvalid"
	codeInvalidVersion   = "InvalidProtocolVersion"
	codeMessageTooLarge  = "MessageTooLarge"
	codeServerError      = "ServerError"
	codeMethodNotAllowed = "MethodNotAllowed"
)

// hubError is IoT Hub's error body:
// {"Message":"ErrorCode:<code>;<text>","ExceptionMessage":"Tracking ID:<id>-G:0-TimeStamp:<MM/dd/yyyy HH:mm:ss>"}.
type hubError struct {
	Message          string `json:"Message"`
	ExceptionMessage string `json:"ExceptionMessage"`
}

func writeHubError(w http.ResponseWriter, status int, code, text string, now time.Time) {
	var id [16]byte
	rand.Read(id[:])
	body, _ := json.Marshal(hubError{
		Message:          "ErrorCode:" + code + ";" + text,
		ExceptionMessage: "Tracking ID:" + hex.EncodeToString(id[:]) + "-G:0-TimeStamp:" + now.UTC().Format("01/02/2006 15:04:05"),
	})
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("iothub-errorcode", code)
	w.WriteHeader(status)
	w.Write(body)
}

func writeJSON(w http.ResponseWriter, status int, etag string, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	if etag != "" {
		w.Header().Set("ETag", `"`+etag+`"`)
	}
	w.WriteHeader(status)
	w.Write(body)
}

// nullIfEmpty is how IoT Hub writes an unset key or thumbprint.
func nullIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// MarshalJSON writes unset keys as null, like IoT Hub.
func (k SymmetricKey) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		PrimaryKey   *string `json:"primaryKey"`
		SecondaryKey *string `json:"secondaryKey"`
	}{nullIfEmpty(k.PrimaryKey), nullIfEmpty(k.SecondaryKey)})
}

// MarshalJSON writes unset thumbprints as null, like IoT Hub.
func (t X509Thumbprint) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		PrimaryThumbprint   *string `json:"primaryThumbprint"`
		SecondaryThumbprint *string `json:"secondaryThumbprint"`
	}{nullIfEmpty(t.PrimaryThumbprint), nullIfEmpty(t.SecondaryThumbprint)})
}
