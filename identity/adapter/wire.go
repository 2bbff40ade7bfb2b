package adapter

import (
	"time"

	"github.com/edgev2/edgev2/identity"
	"github.com/edgev2/edgev2/identity/api"
)

// Domain values to wire types (identity/api). Times travel as Unix
// seconds, 0 for never.

func unix(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	return uint64(t.Unix())
}

func deviceIdentity(dev identity.Device) api.DeviceIdentity {
	return api.DeviceIdentity{HubHostname: dev.HubHostname, DeviceID: dev.DeviceID,
		GatewayHostname: dev.GatewayHostname, AuthType: dev.AuthType, KeyID: dev.KeyID, CertID: dev.CertID}
}

func provisioningInfo(info identity.ProvisioningInfo, fromCache bool, lastErr string) api.ProvisioningInfo {
	return api.ProvisioningInfo{Source: info.Source, Method: info.Method, Endpoint: info.Endpoint,
		IDScope: info.IDScope, RegistrationID: info.RegistrationID, Substatus: info.Substatus,
		ProvisionedAt: unix(info.ProvisionedAt), FromCache: fromCache, LastError: lastErr}
}

// operationalCert is the DPS-issued operational certificate and its renewal.
func operationalCert(op identity.OperationalStatus) *api.OperationalCert {
	return &api.OperationalCert{CertID: op.CertID, KeyID: op.KeyID, Serial: op.Serial,
		ExpiresAt: unix(op.NotAfter), RenewAt: unix(op.RenewAt), RetryAt: unix(op.RetryAt),
		State: op.State, Failure: op.Failure, LastError: op.LastError, Renewals: uint32(op.Renewals)}
}

func moduleIdentity(m identity.Module, dev identity.Device) api.ModuleIdentity {
	return api.ModuleIdentity{ModuleID: m.ModuleID, DeviceID: dev.DeviceID, HubHostname: dev.HubHostname,
		GenerationID: m.GenerationID, AuthType: "sas", ManagedBy: m.ManagedBy}
}
