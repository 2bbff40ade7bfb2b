// Package adapter serves the Identity service's domain (package identity)
// on the bus as org.edgev2.Identity1: it checks polkit, turns method calls
// into domain calls and domain results into the wire types of identity/api.
package adapter

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/identity"
	"github.com/edgev2/edgev2/identity/api"
)

// BusAPI adapts identity.Service to org.edgev2.Identity1.
type BusAPI struct {
	bus.Adapter
	svc *identity.Service
	// CallerUID resolves a caller's uid (GetCallerIdentity).
	CallerUID func(sender string) (uint32, error)
}

// New registers the Identity object on srv and emits IdentityChanged
// and PropertiesChanged when the service's state changes.
func New(ctx context.Context, svc *identity.Service, auth bus.Authority, srv *bus.Server, log *slog.Logger) *BusAPI {
	// Identity's rules read module_id "" as the device: every call names one.
	a := &BusAPI{Adapter: bus.Adapter{Ctx: ctx, Auth: auth, Server: srv, Log: log, DetailKey: api.DetailModuleID, DetailOnRoot: true}, svc: svc}
	a.CallerUID = func(sender string) (uint32, error) {
		c, err := bus.CallerCredentials(srv.Conn(), sender)
		return c.UID, err
	}
	srv.Root(bus.Interface{
		Name: api.Interface,
		Methods: map[string]any{
			api.MethodGetDeviceIdentity:    a.getDeviceIdentity,
			api.MethodGetProvisioningInfo:  a.getProvisioningInfo,
			api.MethodReprovision:          a.reprovision,
			api.MethodCreateModuleIdentity: a.createModuleIdentity,
			api.MethodGetModuleIdentity:    a.getModuleIdentity,
			api.MethodListModuleIdentities: a.listModuleIdentities,
			api.MethodUpdateModuleIdentity: a.updateModuleIdentity,
			api.MethodDeleteModuleIdentity: a.deleteModuleIdentity,
			api.MethodGetSasToken:          a.getSasToken,
			api.MethodGetCallerIdentity:    a.getCallerIdentity,
			api.MethodSignAsModule:         a.signAsModule,
			api.MethodOpenModuleSigner:     a.openModuleSignerUnhooked,
			api.MethodGetModuleSigning:     a.getModuleSigning,
		},
		Properties: func(string) (map[string]godbus.Variant, error) { return a.properties(), nil },
	})
	// State, hub and device id in the signals are what GetDeviceIdentity
	// tells: only identity readers hear them. (The service has no child
	// objects: reads and signals are all about the device, module_id "".)
	a.GuardReads(api.ActionRead)
	svc.OnChange = a.changed
	return a
}

func (a *BusAPI) properties() map[string]godbus.Variant {
	st, lastErr := a.svc.State()
	dev, _ := a.svc.Device()
	return map[string]godbus.Variant{
		api.PropState:       godbus.MakeVariant(string(st)),
		api.PropSource:      godbus.MakeVariant(a.svc.Source()),
		api.PropHubHostname: godbus.MakeVariant(dev.HubHostname),
		api.PropDeviceID:    godbus.MakeVariant(dev.DeviceID),
		api.PropLastError:   godbus.MakeVariant(lastErr),
	}
}

func (a *BusAPI) changed() {
	a.Server.PropertiesChanged(api.ObjectPath, api.Interface, a.properties())
	a.Server.Emit(api.ObjectPath, api.Interface+"."+api.SignalIdentityChanged)
}

func (a *BusAPI) getDeviceIdentity(msg godbus.Message) (map[string]godbus.Variant, *godbus.Error) {
	if e := a.Authorize(bus.CallOf(msg), api.ActionRead, ""); e != nil {
		return nil, e
	}
	dev, err := a.svc.Device()
	if err != nil {
		return nil, a.Fail(api.MethodGetDeviceIdentity, err)
	}
	return api.ToDict(deviceIdentity(dev)), nil
}

func (a *BusAPI) getProvisioningInfo(msg godbus.Message) (map[string]godbus.Variant, *godbus.Error) {
	if e := a.Authorize(bus.CallOf(msg), api.ActionRead, ""); e != nil {
		return nil, e
	}
	info, fromCache, lastErr := a.svc.Info()
	out := provisioningInfo(info, fromCache, lastErr)
	if op, ok := a.svc.Operational(); ok {
		out.Operational = operationalCert(op)
	}
	return api.ToDict(out), nil
}

func (a *BusAPI) reprovision(msg godbus.Message) *godbus.Error {
	if e := a.Authorize(bus.CallOf(msg), api.ActionReprovision, ""); e != nil {
		return e
	}
	if err := a.svc.Reprovision(a.Ctx); err != nil {
		return a.Fail(api.MethodReprovision, err)
	}
	return nil
}

func managedBy(opts map[string]godbus.Variant) (string, *godbus.Error) {
	vals, e := bus.ParseOptions(opts, map[string]string{api.OptManagedBy: "s"})
	if e != nil {
		return "", e
	}
	s, _ := vals[api.OptManagedBy].(string)
	return s, nil
}

func (a *BusAPI) moduleCall(msg godbus.Message, action, moduleID string) *godbus.Error {
	if err := identity.ValidateModuleID(moduleID); err != nil {
		return bus.ToError(err)
	}
	return a.Authorize(bus.CallOf(msg), action, moduleID)
}

// moduleDict is a module identity on the wire, with the device it is of.
func (a *BusAPI) moduleDict(m identity.Module) map[string]godbus.Variant {
	return api.ToDict(a.moduleIdentity(m))
}

func (a *BusAPI) moduleIdentity(m identity.Module) api.ModuleIdentity {
	dev, _ := a.svc.Device()
	return moduleIdentity(m, dev)
}

func (a *BusAPI) createModuleIdentity(msg godbus.Message, moduleID string, opts map[string]godbus.Variant) (map[string]godbus.Variant, *godbus.Error) {
	return a.registerModule(msg, moduleID, opts, api.MethodCreateModuleIdentity, a.svc.CreateModule)
}

func (a *BusAPI) updateModuleIdentity(msg godbus.Message, moduleID string, opts map[string]godbus.Variant) (map[string]godbus.Variant, *godbus.Error) {
	return a.registerModule(msg, moduleID, opts, api.MethodUpdateModuleIdentity, a.svc.UpdateModule)
}

// registerModule is Create- and UpdateModuleIdentity: both take managed_by
// from opts and need manage rights on the module; register is the service's
// CreateModule or UpdateModule.
func (a *BusAPI) registerModule(msg godbus.Message, moduleID string, opts map[string]godbus.Variant, method string,
	register func(ctx context.Context, moduleID, managedBy string) (identity.Module, error)) (map[string]godbus.Variant, *godbus.Error) {
	mb, e := managedBy(opts)
	if e != nil {
		return nil, e
	}
	if e := a.moduleCall(msg, api.ActionManage, moduleID); e != nil {
		return nil, e
	}
	m, err := register(a.Ctx, moduleID, mb)
	if err != nil {
		return nil, a.Fail(method, err)
	}
	return a.moduleDict(m), nil
}

func (a *BusAPI) getModuleIdentity(msg godbus.Message, moduleID string) (map[string]godbus.Variant, *godbus.Error) {
	if e := a.moduleCall(msg, api.ActionRead, moduleID); e != nil {
		return nil, e
	}
	m, err := a.svc.GetModule(a.Ctx, moduleID)
	if err != nil {
		return nil, a.Fail(api.MethodGetModuleIdentity, err)
	}
	return a.moduleDict(m), nil
}

func (a *BusAPI) listModuleIdentities(msg godbus.Message) ([]map[string]godbus.Variant, *godbus.Error) {
	if e := a.Authorize(bus.CallOf(msg), api.ActionRead, ""); e != nil {
		return nil, e
	}
	ms, err := a.svc.ListModules(a.Ctx)
	if err != nil {
		return nil, a.Fail(api.MethodListModuleIdentities, err)
	}
	out := make([]map[string]godbus.Variant, 0, len(ms))
	for _, m := range ms {
		out = append(out, a.moduleDict(m))
	}
	return out, nil
}

func (a *BusAPI) deleteModuleIdentity(msg godbus.Message, moduleID string) *godbus.Error {
	if e := a.moduleCall(msg, api.ActionManage, moduleID); e != nil {
		return e
	}
	if err := a.svc.DeleteModule(a.Ctx, moduleID); err != nil {
		return a.Fail(api.MethodDeleteModuleIdentity, err)
	}
	return nil
}

func (a *BusAPI) getSasToken(msg godbus.Message, moduleID string, ttl uint32) (string, *godbus.Error) {
	if moduleID != "" {
		if err := identity.ValidateModuleID(moduleID); err != nil {
			return "", bus.ToError(err)
		}
	}
	if e := a.Authorize(bus.CallOf(msg), api.ActionManage, moduleID); e != nil {
		return "", e
	}
	tok, err := a.svc.GetSasToken(a.Ctx, moduleID, time.Duration(ttl)*time.Second)
	if err != nil {
		return "", a.Fail(api.MethodGetSasToken, err)
	}
	return tok, nil
}

func (a *BusAPI) getCallerIdentity(msg godbus.Message) (map[string]godbus.Variant, *godbus.Error) {
	call := bus.CallOf(msg)
	if e := a.Authorize(call, api.ActionRead, ""); e != nil {
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
	out := api.CallerIdentity{UID: uid, Principal: p.Name, IDType: p.IDType}
	if p.IDType == "module" {
		m, err := a.svc.GetModule(a.Ctx, p.Name)
		if err != nil {
			return nil, a.Fail(api.MethodGetCallerIdentity, err)
		}
		mi := a.moduleIdentity(m)
		out.Module = &mi
	}
	return api.ToDict(out), nil
}

func (a *BusAPI) signAsModule(msg godbus.Message, moduleID, key string, data []byte) ([]byte, *godbus.Error) {
	if e := a.moduleCall(msg, api.ActionManage, moduleID); e != nil {
		return nil, e
	}
	digest, err := a.svc.SignAsModule(a.Ctx, moduleID, key, data)
	if err != nil {
		return nil, a.Fail(api.MethodSignAsModule, err)
	}
	return digest, nil
}
