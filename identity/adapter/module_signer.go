package adapter

import (
	"fmt"
	"os"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/identity"
	"github.com/edgev2/edgev2/identity/api"
	rtapi "github.com/edgev2/edgev2/modrt/api"
)

// RuntimeBusName is the Module Runtime's bus name: the bus policy lets
// only modrtd's user (root) own it, so its owner is modrtd.
const RuntimeBusName = rtapi.BusName

// runtimeOnly admits only the current owner of RuntimeBusName (and then
// polkit's identity.manage, like SignAsModule): the module signer signs as
// every module, which no per-module polkit grant can express, and modrtd
// runs as root, whom polkit does not scope.
func (a *BusAPI) runtimeOnly(call bus.Call, method string) *godbus.Error {
	var owner string
	if err := a.Server.Conn().BusObject().Call("org.freedesktop.DBus.GetNameOwner", 0, RuntimeBusName).Store(&owner); err != nil || owner != call.Sender {
		return bus.NewError(bus.ErrNotAuthorized, fmt.Sprintf("%s is for the Module Runtime (the owner of %s) only", method, RuntimeBusName))
	}
	return a.Authorize(call, api.ActionManage, "")
}

// ServeModuleSigner answers OpenModuleSigner through r, the bus.FDReplier
// installed on the service's connection, so that identityd's copy of the
// descriptor is closed once the reply carrying it has been sent (closing
// it later by a timer would send a closed, or reused, descriptor when the
// reply is late).
func (a *BusAPI) ServeModuleSigner(r *bus.FDReplier) {
	r.Handle(bus.FDRoute{
		Conn: a.Server.Conn(), Interface: api.Interface, Member: api.MethodOpenModuleSigner,
		Path: func(p godbus.ObjectPath) bool { return p == api.ObjectPath },
		Serve: func(call *godbus.Message) ([]any, *os.File, *godbus.Error) {
			opts, ok := bus.OptionsArg(call)
			if !ok {
				return nil, nil, &godbus.ErrMsgInvalidArg // as godbus would answer
			}
			f, info, e := a.openModuleSigner(*call, opts)
			if e != nil {
				return nil, nil, e
			}
			return []any{godbus.UnixFD(f.Fd()), info}, f, nil
		},
	})
}

// openModuleSigner hands modrtd a Keys session restricted to SignDerived on
// the module-key master (identity/signer.go): a capability, revoked when
// module identities change.
func (a *BusAPI) openModuleSigner(msg godbus.Message, opts map[string]godbus.Variant) (*os.File, map[string]godbus.Variant, *godbus.Error) {
	if _, e := bus.ParseOptions(opts, nil); e != nil {
		return nil, nil, e
	}
	if e := a.runtimeOnly(bus.CallOf(msg), api.MethodOpenModuleSigner); e != nil {
		return nil, nil, e
	}
	f, keyID, err := a.svc.OpenModuleSigner(a.Ctx)
	if err != nil {
		return nil, nil, a.Fail(api.MethodOpenModuleSigner, err)
	}
	return f, api.ToDict(api.ModuleSigner{KeyID: keyID}), nil
}

// openModuleSignerUnhooked is the method-table OpenModuleSigner, reached
// only when the bus connection lacks the FDReplier.
func (a *BusAPI) openModuleSignerUnhooked(godbus.Message, map[string]godbus.Variant) (godbus.UnixFD, map[string]godbus.Variant, *godbus.Error) {
	return -1, nil, bus.NewError(bus.ErrUnavailable, "OpenModuleSigner is not served on this connection")
}

func (a *BusAPI) getModuleSigning(msg godbus.Message, moduleID string, opts map[string]godbus.Variant) (map[string]godbus.Variant, *godbus.Error) {
	if _, e := bus.ParseOptions(opts, nil); e != nil {
		return nil, e
	}
	if err := identity.ValidateModuleID(moduleID); err != nil {
		return nil, bus.ToError(err)
	}
	if e := a.runtimeOnly(bus.CallOf(msg), api.MethodGetModuleSigning); e != nil {
		return nil, e
	}
	ms, err := a.svc.ModuleSigning(a.Ctx, moduleID)
	if err != nil {
		return nil, a.Fail(api.MethodGetModuleSigning, err)
	}
	return api.ToDict(api.ModuleSigning{ModuleID: ms.ModuleID, GenerationID: ms.GenerationID,
		KeyID: ms.KeyID, Primary: ms.Primary, Secondary: ms.Secondary}), nil
}
