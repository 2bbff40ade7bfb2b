// Package api is the wire contract of the Identity service
// (dbus/org.edgev2.Identity1.xml): names, polkit actions and the typed
// a{sv} results, shared by its bus adapter and its client.
package api

import godbus "github.com/godbus/dbus/v5"

// Bus names of the Identity service.
const (
	BusName    = "org.edgev2.Identity1"
	ObjectPath = godbus.ObjectPath("/org/edgev2/Identity1")
	Interface  = "org.edgev2.Identity1"
)

// polkit actions.
const (
	ActionRead        = "org.edgev2.identity.read"
	ActionManage      = "org.edgev2.identity.manage"
	ActionReprovision = "org.edgev2.identity.reprovision"
)

// DetailModuleID is the polkit detail naming the module identity a call
// is about ("" for the device).
const DetailModuleID = "module_id"

// Methods of org.edgev2.Identity1.
const (
	MethodGetDeviceIdentity    = "GetDeviceIdentity"
	MethodGetProvisioningInfo  = "GetProvisioningInfo"
	MethodReprovision          = "Reprovision"
	MethodCreateModuleIdentity = "CreateModuleIdentity"
	MethodGetModuleIdentity    = "GetModuleIdentity"
	MethodListModuleIdentities = "ListModuleIdentities"
	MethodUpdateModuleIdentity = "UpdateModuleIdentity"
	MethodDeleteModuleIdentity = "DeleteModuleIdentity"
	MethodGetSasToken          = "GetSasToken"
	MethodGetCallerIdentity    = "GetCallerIdentity"
	MethodSignAsModule         = "SignAsModule"
	MethodOpenModuleSigner     = "OpenModuleSigner"
	MethodGetModuleSigning     = "GetModuleSigning"
)

// Properties of org.edgev2.Identity1.
const (
	PropState       = "State"
	PropSource      = "Source"
	PropHubHostname = "HubHostname"
	PropDeviceID    = "DeviceId"
	PropLastError   = "LastError"
)

// SignalIdentityChanged is emitted when the state or the device identity
// changed.
const SignalIdentityChanged = "IdentityChanged"

// OptManagedBy is the option of Create/UpdateModuleIdentity that sets the
// module's managedBy.
const OptManagedBy = "managed_by"

// DeviceIdentity is GetDeviceIdentity's a{sv}.
type DeviceIdentity struct {
	HubHostname     string `sv:"hub_hostname"`
	DeviceID        string `sv:"device_id"`
	GatewayHostname string `sv:"gateway_hostname"`
	AuthType        string `sv:"auth_type"`
	KeyID           string `sv:"key_id,omitempty"`
	CertID          string `sv:"cert_id,omitempty"`
}

// ProvisioningInfo is GetProvisioningInfo's a{sv}; times are Unix seconds
// (0: never).
type ProvisioningInfo struct {
	Source         string `sv:"source"`
	Method         string `sv:"method"`
	Endpoint       string `sv:"endpoint"`
	IDScope        string `sv:"id_scope"`
	RegistrationID string `sv:"registration_id"`
	Substatus      string `sv:"substatus"`
	ProvisionedAt  uint64 `sv:"provisioned_at"`
	FromCache      bool   `sv:"from_cache"`
	LastError      string `sv:"last_error"`
	// DynamicReprovisioning and AlwaysReprovisionOnStartup are aziot's
	// flags, for the management API; identityd sends them only when set
	// (it does neither).
	DynamicReprovisioning      bool `sv:"dynamic_reprovisioning,omitempty"`
	AlwaysReprovisionOnStartup bool `sv:"always_reprovision_on_startup,omitempty"`
	// Operational is the DPS-issued operational certificate, when one is
	// configured.
	Operational *OperationalCert `sv:",inline"`
}

// OperationalCert is the operational_* part of ProvisioningInfo.
type OperationalCert struct {
	CertID    string `sv:"operational_cert_id"`
	KeyID     string `sv:"operational_key_id"`
	Serial    string `sv:"operational_serial"`
	ExpiresAt uint64 `sv:"operational_expires_at"`
	RenewAt   uint64 `sv:"operational_renew_at"`
	RetryAt   uint64 `sv:"operational_retry_at"`
	State     string `sv:"operational_state"`
	Failure   string `sv:"operational_failure"`
	LastError string `sv:"operational_last_error"`
	Renewals  uint32 `sv:"operational_renewals"`
}

// ModuleIdentity is a module identity's a{sv}.
type ModuleIdentity struct {
	ModuleID     string `sv:"module_id"`
	DeviceID     string `sv:"device_id"`
	HubHostname  string `sv:"hub_hostname"`
	GenerationID string `sv:"generation_id"`
	AuthType     string `sv:"auth_type"`
	ManagedBy    string `sv:"managed_by"`
}

// CallerIdentity is GetCallerIdentity's a{sv}: the caller's [[principal]]
// and, for a module, its identity.
type CallerIdentity struct {
	UID       uint32          `sv:"uid"`
	Principal string          `sv:"principal"`
	IDType    string          `sv:"id_type"`
	Module    *ModuleIdentity `sv:",inline"`
}

// ModuleSigner is the a{sv} OpenModuleSigner returns with the session.
type ModuleSigner struct {
	KeyID string `sv:"key_id"`
}

// ModuleSigning is GetModuleSigning's a{sv}: how the module signer signs
// for a module now.
type ModuleSigning struct {
	ModuleID     string `sv:"module_id"`
	GenerationID string `sv:"generation_id"`
	KeyID        string `sv:"key_id"`
	Primary      []byte `sv:"primary"`
	Secondary    []byte `sv:"secondary"`
}
