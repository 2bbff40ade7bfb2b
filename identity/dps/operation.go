package dps

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"time"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/identity/hubname"
	"github.com/edgev2/edgev2/internal/cloudhttp"
)

// Registration statuses DPS reports, for the operation and its state.
const (
	StatusUnassigned = "unassigned"
	StatusAssigning  = "assigning"
	StatusAssigned   = "assigned"
	StatusFailed     = "failed"
	StatusDisabled   = "disabled"
)

// Operation is DPS's RegistrationOperationStatus, the body of the register
// and operation status responses (DPS device REST API, 2021-06-01).
type Operation struct {
	OperationID       string             `json:"operationId"`
	Status            string             `json:"status"`
	RegistrationState *RegistrationState `json:"registrationState,omitempty"`
}

// RegistrationState is DPS's DeviceRegistrationResult.
type RegistrationState struct {
	RegistrationID         string          `json:"registrationId,omitempty"`
	CreatedDateTimeUTC     string          `json:"createdDateTimeUtc,omitempty"`
	AssignedHub            string          `json:"assignedHub,omitempty"`
	DeviceID               string          `json:"deviceId,omitempty"`
	Status                 string          `json:"status,omitempty"`
	Substatus              string          `json:"substatus,omitempty"`
	ErrorCode              json.Number     `json:"errorCode,omitempty"`
	ErrorMessage           string          `json:"errorMessage,omitempty"`
	LastUpdatedDateTimeUTC string          `json:"lastUpdatedDateTimeUtc,omitempty"`
	ETag                   string          `json:"etag,omitempty"`
	Payload                json.RawMessage `json:"payload,omitempty"`
	// TPM carries a new authenticationKey for TPM attestation.
	TPM *TPMRegistrationResult `json:"tpm,omitempty"`
	// Certificate issuance (api-version 2025-07-01-preview; issuance.go).
	IssuedCertificateChain  []string     `json:"issuedCertificateChain,omitempty"`
	IssuedClientCertificate string       `json:"issuedClientCertificate,omitempty"`
	TrustBundle             *TrustBundle `json:"trustBundle,omitempty"`
}

// serviceError is DPS's ProvisioningServiceErrorDetails.
type serviceError struct {
	ErrorCode    json.Number `json:"errorCode"`
	TrackingID   string      `json:"trackingId"`
	Message      string      `json:"message"`
	TimestampUTC string      `json:"timestampUtc"`
}

// maxIDLen bounds the identifiers DPS returns; its own limit is 128.
const maxIDLen = 256

// ParseOperation parses and checks a register or operation status body.
// It rejects anything that is not one JSON object of the documented shape:
// unknown status, wrong field types, trailing data, missing operationId
// while assigning, or an assigned state without hub and device.
func ParseOperation(body []byte) (*Operation, error) {
	if len(body) > MaxResponseSize {
		return nil, fault.New(fault.InvalidArgs, "body is larger than %d bytes", MaxResponseSize)
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, fault.New(fault.InvalidArgs, "body is empty")
	}
	if trimmed[0] != '{' {
		return nil, fault.New(fault.InvalidArgs, "body is not a JSON object (starts with %q)", sanitize(trimmed[:min(len(trimmed), 16)], 16))
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	var op Operation
	if err := dec.Decode(&op); err != nil {
		return nil, fault.Wrap(fault.InvalidArgs, err, "body is not valid operation JSON: %s", sanitize([]byte(err.Error()), 120))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fault.New(fault.InvalidArgs, "body has data after the JSON object")
	}
	switch op.Status {
	case StatusUnassigned, StatusAssigning, StatusAssigned, StatusFailed, StatusDisabled:
	case "":
		return nil, fault.New(fault.InvalidArgs, "operation has no status")
	default:
		return nil, fault.New(fault.InvalidArgs, "operation status %q is not one DPS defines", sanitize([]byte(op.Status), 40))
	}
	if err := checkID("operationId", op.OperationID); err != nil {
		return nil, err
	}
	if (op.Status == StatusAssigning || op.Status == StatusUnassigned) && op.OperationID == "" {
		return nil, fault.New(fault.InvalidArgs, "operation is %s but has no operationId to poll", op.Status)
	}
	st := op.RegistrationState
	if st == nil {
		if op.Status == StatusAssigned {
			return nil, fault.New(fault.InvalidArgs, "operation is assigned but has no registrationState")
		}
		return &op, nil
	}
	for _, f := range []struct{ name, v string }{
		{"registrationId", st.RegistrationID}, {"deviceId", st.DeviceID},
		{"etag", st.ETag}, {"substatus", st.Substatus}, {"status", st.Status},
	} {
		if err := checkID("registrationState."+f.name, f.v); err != nil {
			return nil, err
		}
	}
	if len(st.Payload) > 0 && string(st.Payload) == "null" {
		st.Payload = nil
	}
	if op.Status == StatusAssigned {
		if st.AssignedHub == "" || st.DeviceID == "" {
			return nil, fault.New(fault.InvalidArgs, "operation is assigned but registrationState lacks assignedHub or deviceId")
		}
		if err := hubname.Check("assignedHub", st.AssignedHub); err != nil {
			return nil, fault.New(fault.InvalidArgs, "%v", err)
		}
	}
	return &op, nil
}

// checkID rejects identifiers that are too long or carry control characters.
func checkID(name, v string) error { return cloudhttp.CheckText(name, v, maxIDLen) }

// parseTime reads DPS's ISO 8601 UTC timestamps ("2019-03-18T19:34:52.6512386Z").
// They are informational, so an unreadable one becomes the zero time.
func parseTime(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(s))
	if err != nil {
		return time.Time{}
	}
	return t.UTC()
}
