package adapter

import (
	"fmt"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/keys/api"
)

// The org.edgev2.Keys1.Key methods are dispatched here, once, for the bus
// (both godbus's method table and the fast path in fastpath.go) and for
// sessions (session.go): the body is checked against the method's
// signature and read by type assertion — no reflection, no per-call maps —
// and the key path is resolved once.

// keyMethod is one Key method: its input signature, the polkit action it
// needs, the byte arguments the size limit applies to, and its body.
type keyMethod struct {
	sig    string
	action string
	// sized names the []byte arguments by position, for tooLarge.
	sized []sizedArg
	// opts is the position of the trailing a{sv}, or -1.
	opts int
	run  func(a *BusAPI, id string, body []any) (any, *godbus.Error)
}

type sizedArg struct {
	pos  int
	name string
}

// authorizer decides whether the caller of one call may do action on key id.
type authorizer func(action, id string) *godbus.Error

var keyMethods = map[string]*keyMethod{
	api.MethodSign: {sig: "saya{sv}", action: api.ActionUse, sized: []sizedArg{{1, "data"}}, opts: 2,
		run: func(a *BusAPI, id string, b []any) (any, *godbus.Error) {
			if e := noOptions(b[2]); e != nil {
				return nil, e
			}
			sig, err := a.svc.Sign(a.Ctx, id, b[0].(string), b[1].([]byte))
			if err != nil {
				return nil, a.Fail(api.MethodSign, err)
			}
			return nonNil(sig), nil
		}},
	api.MethodVerify: {sig: "sayaya{sv}", action: api.ActionUse, sized: []sizedArg{{1, "data"}, {2, "signature"}}, opts: 3,
		run: func(a *BusAPI, id string, b []any) (any, *godbus.Error) {
			if e := noOptions(b[3]); e != nil {
				return nil, e
			}
			ok, err := a.svc.Verify(a.Ctx, id, b[0].(string), b[1].([]byte), b[2].([]byte))
			if err != nil {
				return nil, a.Fail(api.MethodVerify, err)
			}
			return ok, nil
		}},
	api.MethodEncrypt: {sig: "saya{sv}", action: api.ActionUse, sized: []sizedArg{{1, "plaintext"}}, opts: 2,
		run: func(a *BusAPI, id string, b []any) (any, *godbus.Error) {
			o, e := cipherOptions(b[2].(map[string]godbus.Variant))
			if e != nil {
				return nil, e
			}
			ct, err := a.svc.Encrypt(a.Ctx, id, b[0].(string), b[1].([]byte), o)
			if err != nil {
				return nil, a.Fail(api.MethodEncrypt, err)
			}
			return nonNil(ct), nil
		}},
	api.MethodDecrypt: {sig: "saya{sv}", action: api.ActionUse, sized: []sizedArg{{1, "ciphertext"}}, opts: 2,
		run: func(a *BusAPI, id string, b []any) (any, *godbus.Error) {
			o, e := cipherOptions(b[2].(map[string]godbus.Variant))
			if e != nil {
				return nil, e
			}
			pt, err := a.svc.Decrypt(a.Ctx, id, b[0].(string), b[1].([]byte), o)
			if err != nil {
				return nil, a.Fail(api.MethodDecrypt, err)
			}
			return nonNil(pt), nil
		}},
	api.MethodSignDerived: {sig: "aysay", action: api.ActionUse, sized: []sizedArg{{0, "derivation"}, {2, "data"}}, opts: -1,
		run: func(a *BusAPI, id string, b []any) (any, *godbus.Error) {
			sig, err := a.svc.SignDerived(a.Ctx, id, b[0].([]byte), b[1].(string), b[2].([]byte))
			if err != nil {
				return nil, a.Fail(api.MethodSignDerived, err)
			}
			return nonNil(sig), nil
		}},
	api.MethodExportDerived: {sig: "ay", action: api.ActionExport, sized: []sizedArg{{0, "derivation"}}, opts: -1,
		run: func(a *BusAPI, id string, b []any) (any, *godbus.Error) {
			key, err := a.svc.ExportDerived(a.Ctx, id, b[0].([]byte))
			if err != nil {
				return nil, a.Fail(api.MethodExportDerived, err)
			}
			return nonNil(key), nil
		}},
	api.MethodEncryptDerived: {sig: "aysaya{sv}", action: api.ActionUse, sized: []sizedArg{{0, "derivation"}, {2, "plaintext"}}, opts: 3,
		run: func(a *BusAPI, id string, b []any) (any, *godbus.Error) {
			o, e := cipherOptions(b[3].(map[string]godbus.Variant))
			if e != nil {
				return nil, e
			}
			ct, err := a.svc.EncryptDerived(a.Ctx, id, b[0].([]byte), b[1].(string), b[2].([]byte), o)
			if err != nil {
				return nil, a.Fail(api.MethodEncryptDerived, err)
			}
			return nonNil(ct), nil
		}},
	api.MethodDecryptDerived: {sig: "aysaya{sv}", action: api.ActionUse, sized: []sizedArg{{0, "derivation"}, {2, "ciphertext"}}, opts: 3,
		run: func(a *BusAPI, id string, b []any) (any, *godbus.Error) {
			o, e := cipherOptions(b[3].(map[string]godbus.Variant))
			if e != nil {
				return nil, e
			}
			pt, err := a.svc.DecryptDerived(a.Ctx, id, b[0].([]byte), b[1].(string), b[2].([]byte), o)
			if err != nil {
				return nil, a.Fail(api.MethodDecryptDerived, err)
			}
			return nonNil(pt), nil
		}},
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// noOptions accepts only an empty a{sv} (Sign and Verify take none yet)
// without building anything for the empty one.
func noOptions(v any) *godbus.Error {
	opts := v.(map[string]godbus.Variant)
	if len(opts) == 0 {
		return nil
	}
	_, _, e := options(opts, nil, nil)
	return e
}

// errInvalidSignature is godbus's own name for arguments of the wrong types.
const errInvalidSignature = "org.freedesktop.DBus.Error.InvalidArgs"

// keyIDOfPath resolves a key object path to its id, once per call.
func keyIDOfPath(p godbus.ObjectPath) (string, *godbus.Error) {
	return bus.ChildIDOf(api.ObjectPath, api.Collection, p)
}

// callKey runs Key method member on the object at path with body (decoded
// per sig) after authz allows it. Order: signature, sizes (no work for
// what will be refused), path, authorization, existence (so unauthorised
// callers learn nothing of ids), options, the operation.
func (a *BusAPI) callKey(member, sig string, body []any, path godbus.ObjectPath, authz authorizer) (any, *godbus.Error) {
	m := keyMethods[member]
	if m == nil {
		return nil, bus.NewError("org.freedesktop.DBus.Error.UnknownMethod",
			fmt.Sprintf("%s has no method %q", api.KeyInterface, member))
	}
	if sig != m.sig { // godbus decoded the body per sig: the types are right

		return nil, bus.NewError(errInvalidSignature, fmt.Sprintf("%s.%s takes (%s), not (%s)", api.KeyInterface, member, m.sig, sig))
	}
	for _, s := range m.sized {
		if b := body[s.pos].([]byte); len(b) > api.MaxData {
			return nil, bus.NewError(bus.ErrInvalidArgs, fmt.Sprintf("%s is %d bytes; the limit is %d (1 MiB)", s.name, len(b), api.MaxData))
		}
	}
	if m.opts >= 0 {
		for k, v := range body[m.opts].(map[string]godbus.Variant) {
			if b, ok := v.Value().([]byte); ok && len(b) > api.MaxData {
				return nil, bus.NewError(bus.ErrInvalidArgs, fmt.Sprintf("option %q is %d bytes; the limit is %d (1 MiB)", k, len(b), api.MaxData))
			}
		}
	}
	id, e := keyIDOfPath(path)
	if e != nil {
		return nil, e
	}
	if e := authz(m.action, id); e != nil {
		return nil, e
	}
	if !a.svc.Exists(a.Ctx, id) {
		return nil, bus.NewError("org.freedesktop.DBus.Error.UnknownObject", fmt.Sprintf("no object at %s", path))
	}
	return m.run(a, id, body)
}

// busCallKey serves a Key method call from the bus.
func (a *BusAPI) busCallKey(msg *godbus.Message, member string) (any, *godbus.Error) {
	sig, _ := msg.Headers[godbus.FieldSignature].Value().(godbus.Signature)
	call := bus.CallOf(*msg)
	return a.callKey(member, sig.String(), msg.Body, call.Path, func(action, id string) *godbus.Error {
		return a.Authorize(call, action, id)
	})
}
