package identity

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/identity/api"
	"github.com/edgev2/edgev2/internal/fault"
)

// BusAPI adapts Service to org.edgev2.Identity1.
type BusAPI struct {
	ctx  context.Context
	svc  *Service
	auth bus.Authority
	srv  *bus.Server
	log  *slog.Logger
	// CallerUID resolves a caller's uid (GetCallerIdentity).
	CallerUID func(sender string) (uint32, error)
}

// NewBusAPI registers the Identity object on srv and emits IdentityChanged
// and PropertiesChanged when the service's state changes.
func NewBusAPI(ctx context.Context, svc *Service, auth bus.Authority, srv *bus.Server, log *slog.Logger) *BusAPI {
	a := &BusAPI{ctx: ctx, svc: svc, auth: auth, srv: srv, log: log}
	a.CallerUID = func(sender string) (uint32, error) {
		c, err := bus.CallerCredentials(srv.Conn(), sender)
		return c.UID, err
	}
	srv.Root(bus.Interface{
		Name: api.Interface,
		Methods: map[string]any{
			"GetDeviceIdentity":    a.getDeviceIdentity,
			"GetProvisioningInfo":  a.getProvisioningInfo,
			"Reprovision":          a.reprovision,
			"CreateModuleIdentity": a.createModuleIdentity,
			"GetModuleIdentity":    a.getModuleIdentity,
			"ListModuleIdentities": a.listModuleIdentities,
			"UpdateModuleIdentity": a.updateModuleIdentity,
			"DeleteModuleIdentity": a.deleteModuleIdentity,
			"GetSasToken":          a.getSasToken,
			"GetCallerIdentity":    a.getCallerIdentity,
			"SignAsModule":         a.signAsModule,
			"OpenModuleSigner":     a.openModuleSigner,
			"GetModuleSigning":     a.getModuleSigning,
		},
		Properties: func(string) (map[string]godbus.Variant, error) { return a.properties(), nil },
	})
	srv.CanRead = func(call bus.Call, id string) *godbus.Error { return a.authorize(call, api.ActionRead, "") }
	// State, hub and device id in the signals are what GetDeviceIdentity
	// tells: only identity readers hear them.
	srv.CanReceive = func(peer, _ string) bool {
		return bus.MayReceive(ctx, auth, peer, api.ActionRead, map[string]string{"module_id": ""})
	}
	svc.OnChange = a.changed
	return a
}

func (a *BusAPI) properties() map[string]godbus.Variant {
	st, lastErr := a.svc.State()
	dev, _ := a.svc.Device()
	return map[string]godbus.Variant{
		"State":       godbus.MakeVariant(string(st)),
		"Source":      godbus.MakeVariant(a.svc.Source()),
		"HubHostname": godbus.MakeVariant(dev.HubHostname),
		"DeviceId":    godbus.MakeVariant(dev.DeviceID),
		"LastError":   godbus.MakeVariant(lastErr),
	}
}

func (a *BusAPI) changed() {
	a.srv.PropertiesChanged(api.ObjectPath, api.Interface, a.properties())
	a.srv.Emit(api.ObjectPath, api.Interface+".IdentityChanged")
}

func (a *BusAPI) authorize(call bus.Call, action, moduleID string) *godbus.Error {
	return a.auth.Authorize(a.ctx, call, action, map[string]string{"module_id": moduleID})
}

func (a *BusAPI) fail(op string, err error) *godbus.Error {
	if k := fault.KindOf(err); k == fault.Failed || k == fault.Unavailable {
		a.log.Error(op+" failed", "err", err)
	} else {
		a.log.Debug(op+" refused", "err", err)
	}
	return bus.ToError(err)
}

func v(x any) godbus.Variant { return godbus.MakeVariant(x) }

func (a *BusAPI) moduleDict(m Module) map[string]godbus.Variant {
	dev, _ := a.svc.Device()
	return map[string]godbus.Variant{
		"module_id": v(m.ModuleID), "device_id": v(dev.DeviceID), "hub_hostname": v(dev.HubHostname),
		"generation_id": v(m.GenerationID), "auth_type": v("sas"), "managed_by": v(m.ManagedBy),
	}
}

func (a *BusAPI) getDeviceIdentity(msg godbus.Message) (map[string]godbus.Variant, *godbus.Error) {
	if e := a.authorize(bus.CallOf(msg), api.ActionRead, ""); e != nil {
		return nil, e
	}
	dev, err := a.svc.Device()
	if err != nil {
		return nil, a.fail("GetDeviceIdentity", err)
	}
	out := map[string]godbus.Variant{"hub_hostname": v(dev.HubHostname), "device_id": v(dev.DeviceID),
		"gateway_hostname": v(dev.GatewayHostname), "auth_type": v(dev.AuthType)}
	if dev.KeyID != "" {
		out["key_id"] = v(dev.KeyID)
	}
	if dev.CertID != "" {
		out["cert_id"] = v(dev.CertID)
	}
	return out, nil
}

func (a *BusAPI) getProvisioningInfo(msg godbus.Message) (map[string]godbus.Variant, *godbus.Error) {
	if e := a.authorize(bus.CallOf(msg), api.ActionRead, ""); e != nil {
		return nil, e
	}
	info, fromCache, lastErr := a.svc.Info()
	var at uint64
	if !info.ProvisionedAt.IsZero() {
		at = uint64(info.ProvisionedAt.Unix())
	}
	out := map[string]godbus.Variant{
		"source": v(info.Source), "method": v(info.Method), "endpoint": v(info.Endpoint),
		"id_scope": v(info.IDScope), "registration_id": v(info.RegistrationID), "substatus": v(info.Substatus),
		"provisioned_at": v(at), "from_cache": v(fromCache), "last_error": v(lastErr),
	}
	if op, ok := a.svc.Operational(); ok {
		// The DPS-issued operational certificate and its renewal.
		unix := func(t time.Time) uint64 {
			if t.IsZero() {
				return 0
			}
			return uint64(t.Unix())
		}
		out["operational_cert_id"], out["operational_key_id"], out["operational_serial"] = v(op.CertID), v(op.KeyID), v(op.Serial)
		out["operational_expires_at"], out["operational_renew_at"], out["operational_retry_at"] = v(unix(op.NotAfter)), v(unix(op.RenewAt)), v(unix(op.RetryAt))
		out["operational_state"], out["operational_failure"], out["operational_last_error"] = v(op.State), v(op.Failure), v(op.LastError)
		out["operational_renewals"] = v(uint32(op.Renewals))
	}
	return out, nil
}

func (a *BusAPI) reprovision(msg godbus.Message) *godbus.Error {
	if e := a.authorize(bus.CallOf(msg), api.ActionReprovision, ""); e != nil {
		return e
	}
	if err := a.svc.Reprovision(a.ctx); err != nil {
		return a.fail("Reprovision", err)
	}
	return nil
}

func managedBy(opts map[string]godbus.Variant) (string, *godbus.Error) {
	vals, e := bus.ParseOptions(opts, map[string]string{"managed_by": "s"})
	if e != nil {
		return "", e
	}
	s, _ := vals["managed_by"].(string)
	return s, nil
}

func (a *BusAPI) moduleCall(msg godbus.Message, action, moduleID string) *godbus.Error {
	if err := ValidateModuleID(moduleID); err != nil {
		return bus.ToError(err)
	}
	return a.authorize(bus.CallOf(msg), action, moduleID)
}

func (a *BusAPI) createModuleIdentity(msg godbus.Message, moduleID string, opts map[string]godbus.Variant) (map[string]godbus.Variant, *godbus.Error) {
	mb, e := managedBy(opts)
	if e != nil {
		return nil, e
	}
	if e := a.moduleCall(msg, api.ActionManage, moduleID); e != nil {
		return nil, e
	}
	m, err := a.svc.CreateModule(a.ctx, moduleID, mb)
	if err != nil {
		return nil, a.fail("CreateModuleIdentity", err)
	}
	return a.moduleDict(m), nil
}

func (a *BusAPI) getModuleIdentity(msg godbus.Message, moduleID string) (map[string]godbus.Variant, *godbus.Error) {
	if e := a.moduleCall(msg, api.ActionRead, moduleID); e != nil {
		return nil, e
	}
	m, err := a.svc.GetModule(a.ctx, moduleID)
	if err != nil {
		return nil, a.fail("GetModuleIdentity", err)
	}
	return a.moduleDict(m), nil
}

func (a *BusAPI) listModuleIdentities(msg godbus.Message) ([]map[string]godbus.Variant, *godbus.Error) {
	if e := a.authorize(bus.CallOf(msg), api.ActionRead, ""); e != nil {
		return nil, e
	}
	ms, err := a.svc.ListModules(a.ctx)
	if err != nil {
		return nil, a.fail("ListModuleIdentities", err)
	}
	out := make([]map[string]godbus.Variant, 0, len(ms))
	for _, m := range ms {
		out = append(out, a.moduleDict(m))
	}
	return out, nil
}

func (a *BusAPI) updateModuleIdentity(msg godbus.Message, moduleID string, opts map[string]godbus.Variant) (map[string]godbus.Variant, *godbus.Error) {
	mb, e := managedBy(opts)
	if e != nil {
		return nil, e
	}
	if e := a.moduleCall(msg, api.ActionManage, moduleID); e != nil {
		return nil, e
	}
	m, err := a.svc.UpdateModule(a.ctx, moduleID, mb)
	if err != nil {
		return nil, a.fail("UpdateModuleIdentity", err)
	}
	return a.moduleDict(m), nil
}

func (a *BusAPI) deleteModuleIdentity(msg godbus.Message, moduleID string) *godbus.Error {
	if e := a.moduleCall(msg, api.ActionManage, moduleID); e != nil {
		return e
	}
	if err := a.svc.DeleteModule(a.ctx, moduleID); err != nil {
		return a.fail("DeleteModuleIdentity", err)
	}
	return nil
}

func (a *BusAPI) getSasToken(msg godbus.Message, moduleID string, ttl uint32) (string, *godbus.Error) {
	if moduleID != "" {
		if err := ValidateModuleID(moduleID); err != nil {
			return "", bus.ToError(err)
		}
	}
	if e := a.authorize(bus.CallOf(msg), api.ActionManage, moduleID); e != nil {
		return "", e
	}
	tok, err := a.svc.GetSasToken(a.ctx, moduleID, time.Duration(ttl)*time.Second)
	if err != nil {
		return "", a.fail("GetSasToken", err)
	}
	return tok, nil
}

func (a *BusAPI) getCallerIdentity(msg godbus.Message) (map[string]godbus.Variant, *godbus.Error) {
	call := bus.CallOf(msg)
	if e := a.authorize(call, api.ActionRead, ""); e != nil {
		return nil, e
	}
	uid, err := a.CallerUID(call.Sender)
	if err != nil {
		return nil, bus.NewError(bus.ErrFailed, "cannot identify the caller")
	}
	p, ok := a.svc.CallerPrincipal(uid)
	if !ok {
		return nil, bus.NewError(bus.ErrNotFound, fmt.Sprintf("uid %d is not a configured [[principal]]", uid))
	}
	out := map[string]godbus.Variant{"uid": v(uid), "principal": v(p.Name), "id_type": v(p.IDType)}
	if p.IDType == "module" {
		m, err := a.svc.GetModule(a.ctx, p.Name)
		if err != nil {
			return nil, a.fail("GetCallerIdentity", err)
		}
		for k, val := range a.moduleDict(m) {
			out[k] = val
		}
	}
	return out, nil
}

func (a *BusAPI) signAsModule(msg godbus.Message, moduleID, key string, data []byte) ([]byte, *godbus.Error) {
	if e := a.moduleCall(msg, api.ActionManage, moduleID); e != nil {
		return nil, e
	}
	digest, err := a.svc.SignAsModule(a.ctx, moduleID, key, data)
	if err != nil {
		return nil, a.fail("SignAsModule", err)
	}
	return digest, nil
}

// RuntimeBusName is the Module Runtime's bus name: the bus policy lets
// only modrtd's user (root) own it, so its owner is modrtd.
const RuntimeBusName = "org.edgev2.ModuleRuntime1"

// runtimeOnly admits only the current owner of RuntimeBusName (and then
// polkit's identity.manage, like SignAsModule): the module signer signs as
// every module, which no per-module polkit grant can express, and modrtd
// runs as root, whom polkit does not scope.
func (a *BusAPI) runtimeOnly(call bus.Call, method string) *godbus.Error {
	var owner string
	if err := a.srv.Conn().BusObject().Call("org.freedesktop.DBus.GetNameOwner", 0, RuntimeBusName).Store(&owner); err != nil || owner != call.Sender {
		return bus.NewError(bus.ErrNotAuthorized, fmt.Sprintf("%s is for the Module Runtime (the owner of %s) only", method, RuntimeBusName))
	}
	return a.authorize(call, api.ActionManage, "")
}

// openModuleSigner hands modrtd a Keys session restricted to SignDerived on
// the module-key master (signer.go): a capability, revoked when module
// identities change.
func (a *BusAPI) openModuleSigner(msg godbus.Message, opts map[string]godbus.Variant) (godbus.UnixFD, map[string]godbus.Variant, *godbus.Error) {
	if _, e := bus.ParseOptions(opts, nil); e != nil {
		return -1, nil, e
	}
	if e := a.runtimeOnly(bus.CallOf(msg), "OpenModuleSigner"); e != nil {
		return -1, nil, e
	}
	f, keyID, err := a.svc.OpenModuleSigner(a.ctx)
	if err != nil {
		return -1, nil, a.fail("OpenModuleSigner", err)
	}
	// godbus sends the fd with the reply; close our copy once it is sent.
	fd := godbus.UnixFD(f.Fd())
	go func() { time.Sleep(5 * time.Second); f.Close() }()
	return fd, map[string]godbus.Variant{"key_id": v(keyID)}, nil
}

func (a *BusAPI) getModuleSigning(msg godbus.Message, moduleID string, opts map[string]godbus.Variant) (map[string]godbus.Variant, *godbus.Error) {
	if _, e := bus.ParseOptions(opts, nil); e != nil {
		return nil, e
	}
	if err := ValidateModuleID(moduleID); err != nil {
		return nil, bus.ToError(err)
	}
	if e := a.runtimeOnly(bus.CallOf(msg), "GetModuleSigning"); e != nil {
		return nil, e
	}
	ms, err := a.svc.ModuleSigning(a.ctx, moduleID)
	if err != nil {
		return nil, a.fail("GetModuleSigning", err)
	}
	return map[string]godbus.Variant{"module_id": v(ms.ModuleID), "generation_id": v(ms.GenerationID),
		"key_id": v(ms.KeyID), "primary": v(ms.Primary), "secondary": v(ms.Secondary)}, nil
}
