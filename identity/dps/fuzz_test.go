package dps

import (
	"testing"

	"github.com/edgev2/edgev2/identity/hubname"
)

func FuzzParseOperation(f *testing.F) {
	for _, s := range []string{assigned, assigning, `{"operationId":"x","status":"failed","registrationState":{"errorCode":400209,"errorMessage":"m"}}`,
		`{"status":"disabled"}`, `{}`, `[]`, `null`, `<html>`, assigned[:50], `{"operationId":"x","status":"assigned","registrationState":{"payload":null}}`,
		`{"operationId":"x","status":"assigned","registrationState":{"assignedHub":"h","deviceId":"d","tpm":{"authenticationKey":"AAEC"}}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		op, err := ParseOperation(body)
		if err != nil {
			return
		}
		switch op.Status {
		case StatusAssigned:
			if op.RegistrationState == nil || op.RegistrationState.AssignedHub == "" || op.RegistrationState.DeviceID == "" || hubname.Check("h", op.RegistrationState.AssignedHub) != nil {
				t.Fatalf("accepted assigned without usable state: %s", body)
			}
		case StatusAssigning, StatusUnassigned:
			if op.OperationID == "" {
				t.Fatalf("accepted %s without operationId", op.Status)
			}
		case StatusFailed, StatusDisabled:
		default:
			t.Fatalf("accepted status %q", op.Status)
		}
	})
}
