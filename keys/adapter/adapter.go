// Package adapter serves the Keys service (keys.Service) on the bus as
// org.edgev2.Keys1: method tables, the fast path, sessions and their workers.
// It holds argument checks, authorization and error mapping, no key logic.
package adapter

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/keys"
	"github.com/edgev2/edgev2/keys/api"
)

// BusAPI adapts Service to org.edgev2.Keys1: argument checks, authorization,
// error mapping, signals. It holds no key logic.
type BusAPI struct {
	bus.Adapter
	svc *keys.Service

	sessions sessionRegistry
	pool     *workerPool

	releaseMu sync.Mutex
	release   *time.Timer // hands freed heap back to the OS after large listings
}

// New registers the Keys objects on srv (call srv.Export and Claim after).
func New(ctx context.Context, svc *keys.Service, auth bus.Authority, srv *bus.Server, log *slog.Logger) *BusAPI {
	a := &BusAPI{Adapter: bus.Adapter{Ctx: ctx, Auth: auth, Server: srv, Log: log, DetailKey: api.DetailKeyID}, svc: svc, pool: newWorkerPool(ctx, poolWorkers)}
	srv.Root(bus.Interface{
		Name: api.Interface,
		Methods: map[string]any{
			api.MethodCreateKey:     a.createKey,
			api.MethodCreateKeyPair: a.createKeyPair,
			api.MethodGetKey:        a.getKey,
			api.MethodListKeys:      a.listKeys,
			api.MethodDeleteKey:     a.deleteKey,
			api.MethodMoveKey:       a.moveKey,
		},
		Properties: func(string) (map[string]godbus.Variant, error) {
			mechs := svc.TokenMechanisms()
			if mechs == nil {
				mechs = []string{}
			}
			return map[string]godbus.Variant{api.PropEngine: godbus.MakeVariant(svc.EngineName()), api.PropTokenMechanisms: godbus.MakeVariant(mechs)}, nil
		},
		Intercepted: map[string]string{api.MethodOpenSession: "a{sv}"}, // FastPath → serveOpenSession
	})
	srv.AddCollection(bus.Collection{
		Name: api.Collection,
		Interfaces: []bus.Interface{{
			Name: api.KeyInterface,
			Methods: map[string]any{
				api.MethodSign:           a.sign,
				api.MethodVerify:         a.verify,
				api.MethodEncrypt:        a.encrypt,
				api.MethodDecrypt:        a.decrypt,
				api.MethodSignDerived:    a.signDerived,
				api.MethodExportDerived:  a.exportDerived,
				api.MethodEncryptDerived: a.encryptDerived,
				api.MethodDecryptDerived: a.decryptDerived,
			},
			Properties:  a.keyProperties,
			Intercepted: fastPathSignatures(),
		}},
		Exists: func(id string) bool { return svc.Exists(ctx, id) },
		List: func() ([]string, error) {
			ids, err := svc.List(ctx)
			if len(ids) > largeListing {
				a.releaseMemoryLater()
			}
			return ids, err
		},
	})
	// InterfacesAdded/Removed name a key: only its readers hear of it.
	a.GuardReads(api.ActionRead)
	return a
}

// largeListing is the number of keys above which a listing (and the
// GetManagedObjects reply built from it: about 430 bytes a key) leaves
// enough garbage that keyd hands it back to the OS instead of keeping it
// until the runtime's scavenger gets to it.
const largeListing = 1000

// releaseMemoryLater returns freed heap to the OS two seconds after the
// last of a run of large listings (the reply is sent by then).
func (a *BusAPI) releaseMemoryLater() {
	a.releaseMu.Lock()
	defer a.releaseMu.Unlock()
	if a.release == nil {
		a.release = time.AfterFunc(2*time.Second, debug.FreeOSMemory)
		return
	}
	a.release.Reset(2 * time.Second)
}

func (a *BusAPI) keyProperties(id string) (map[string]godbus.Variant, error) {
	info, err := a.svc.Describe(a.Ctx, id)
	if err != nil {
		return nil, err
	}
	pub := info.PublicDER
	if pub == nil && info.Public != nil {
		if pub, err = x509.MarshalPKIXPublicKey(info.Public); err != nil {
			return nil, fmt.Errorf("encode public key of %q: %w", id, err)
		}
	}
	if pub == nil {
		pub = []byte{}
	}
	return map[string]godbus.Variant{
		api.PropID:         godbus.MakeVariant(info.ID),
		api.PropType:       godbus.MakeVariant(string(info.Type)),
		api.PropPublicKey:  godbus.MakeVariant(pub),
		api.PropLocation:   godbus.MakeVariant(info.Location),
		api.PropMechanisms: godbus.MakeVariant(keys.Mechanisms(info)),
		api.PropPreloaded:  godbus.MakeVariant(info.Preloaded),
	}, nil
}

// options checks an a{sv} against the byte-array and string keys a method
// accepts and returns their values by name.
func options(opts map[string]godbus.Variant, byteKeys, stringKeys []string) (map[string][]byte, map[string]string, *godbus.Error) {
	accepted := map[string]string{}
	for _, k := range byteKeys {
		accepted[k] = "ay"
	}
	for _, k := range stringKeys {
		accepted[k] = "s"
	}
	vals, e := bus.ParseOptions(opts, accepted)
	if e != nil {
		return nil, nil, e
	}
	bs, ss := map[string][]byte{}, map[string]string{}
	for k, v := range vals {
		switch v := v.(type) {
		case []byte:
			bs[k] = v
		case string:
			ss[k] = v
		}
	}
	return bs, ss, nil
}

func (a *BusAPI) checkID(id string) *godbus.Error {
	if err := keys.ValidateID(id); err != nil {
		return bus.ToError(err)
	}
	return nil
}

func (a *BusAPI) createKey(msg godbus.Message, id string, opts map[string]godbus.Variant) (godbus.ObjectPath, *godbus.Error) {
	if e := a.checkID(id); e != nil {
		return "/", e
	}
	bs, ss, e := options(opts, []string{api.OptValue}, []string{api.OptUsage})
	if e != nil {
		return "/", e
	}
	if e := a.Authorize(bus.CallOf(msg), api.ActionManage, id); e != nil {
		return "/", e
	}
	usage := keys.UsageSign
	if u, ok := ss[api.OptUsage]; ok {
		usage = keys.Usage(u)
	}
	value, hasValue := bs[api.OptValue]
	if hasValue && value == nil {
		value = []byte{}
	}
	info, created, err := a.svc.CreateKey(a.Ctx, id, usage, value)
	if err != nil {
		return "/", a.Fail(api.MethodCreateKey, err)
	}
	if created {
		a.Server.Added(api.Collection, info.ID)
	}
	return a.Server.ChildPath(api.Collection, info.ID), nil
}

func (a *BusAPI) createKeyPair(msg godbus.Message, id, algorithms string, opts map[string]godbus.Variant) (godbus.ObjectPath, *godbus.Error) {
	if e := a.checkID(id); e != nil {
		return "/", e
	}
	if _, _, e := options(opts, nil, nil); e != nil {
		return "/", e
	}
	if e := a.Authorize(bus.CallOf(msg), api.ActionManage, id); e != nil {
		return "/", e
	}
	info, created, err := a.svc.CreateKeyPair(a.Ctx, id, algorithms)
	if err != nil {
		return "/", a.Fail(api.MethodCreateKeyPair, err)
	}
	if created {
		a.Server.Added(api.Collection, info.ID)
	}
	return a.Server.ChildPath(api.Collection, info.ID), nil
}

func (a *BusAPI) getKey(msg godbus.Message, id string) (godbus.ObjectPath, *godbus.Error) {
	if e := a.checkID(id); e != nil {
		return "/", e
	}
	if e := a.Authorize(bus.CallOf(msg), api.ActionRead, id); e != nil {
		return "/", e
	}
	if _, err := a.svc.Describe(a.Ctx, id); err != nil {
		return "/", a.Fail(api.MethodGetKey, err)
	}
	return a.Server.ChildPath(api.Collection, id), nil
}

func (a *BusAPI) listKeys(msg godbus.Message) ([]string, *godbus.Error) {
	if e := a.Authorize(bus.CallOf(msg), api.ActionRead, ""); e != nil {
		return nil, e
	}
	ids, err := a.svc.List(a.Ctx)
	if err != nil {
		return nil, a.Fail(api.MethodListKeys, err)
	}
	if ids == nil {
		ids = []string{}
	}
	return ids, nil
}

func (a *BusAPI) deleteKey(msg godbus.Message, id string) *godbus.Error {
	if e := a.checkID(id); e != nil {
		return e
	}
	if e := a.Authorize(bus.CallOf(msg), api.ActionManage, id); e != nil {
		return e
	}
	if err := a.svc.Delete(a.Ctx, id); err != nil {
		return a.Fail(api.MethodDeleteKey, err)
	}
	a.Server.Removed(api.Collection, id)
	return nil
}

func (a *BusAPI) moveKey(msg godbus.Message, from, to string) *godbus.Error {
	for _, id := range []string{from, to} {
		if e := a.checkID(id); e != nil {
			return e
		}
	}
	call := bus.CallOf(msg)
	for _, id := range []string{from, to} {
		if e := a.Authorize(call, api.ActionManage, id); e != nil {
			return e
		}
	}
	replaced := a.svc.Exists(a.Ctx, to)
	if err := a.svc.Move(a.Ctx, from, to); err != nil {
		return a.Fail(api.MethodMoveKey, err)
	}
	a.Server.Removed(api.Collection, from)
	if replaced {
		a.Server.Removed(api.Collection, to)
	}
	a.Server.Added(api.Collection, to)
	return nil
}

func cipherOptions(opts map[string]godbus.Variant) (keys.CipherOptions, *godbus.Error) {
	bs, _, e := options(opts, []string{api.OptIV, api.OptAAD}, nil)
	if e != nil {
		return keys.CipherOptions{}, e
	}
	o := keys.CipherOptions{IV: bs[api.OptIV], AAD: bs[api.OptAAD]}
	if _, ok := bs[api.OptIV]; ok && o.IV == nil {
		o.IV = []byte{}
	}
	return o, nil
}

// The Key methods as godbus method table entries (their Go signatures give
// the introspected and checked D-Bus signatures); the fast path in
// fastpath.go serves the same calls before godbus's reflection sees them.
func (a *BusAPI) sign(msg godbus.Message, _ string, _ []byte, _ map[string]godbus.Variant) ([]byte, *godbus.Error) {
	return bytesReply(a.busCallKey(&msg, api.MethodSign))
}

func (a *BusAPI) verify(msg godbus.Message, _ string, _, _ []byte, _ map[string]godbus.Variant) (bool, *godbus.Error) {
	v, e := a.busCallKey(&msg, api.MethodVerify)
	ok, _ := v.(bool)
	return ok, e
}

func (a *BusAPI) encrypt(msg godbus.Message, _ string, _ []byte, _ map[string]godbus.Variant) ([]byte, *godbus.Error) {
	return bytesReply(a.busCallKey(&msg, api.MethodEncrypt))
}

func (a *BusAPI) decrypt(msg godbus.Message, _ string, _ []byte, _ map[string]godbus.Variant) ([]byte, *godbus.Error) {
	return bytesReply(a.busCallKey(&msg, api.MethodDecrypt))
}

func (a *BusAPI) signDerived(msg godbus.Message, _ []byte, _ string, _ []byte) ([]byte, *godbus.Error) {
	return bytesReply(a.busCallKey(&msg, api.MethodSignDerived))
}

func (a *BusAPI) exportDerived(msg godbus.Message, _ []byte) ([]byte, *godbus.Error) {
	return bytesReply(a.busCallKey(&msg, api.MethodExportDerived))
}

func (a *BusAPI) encryptDerived(msg godbus.Message, _ []byte, _ string, _ []byte, _ map[string]godbus.Variant) ([]byte, *godbus.Error) {
	return bytesReply(a.busCallKey(&msg, api.MethodEncryptDerived))
}

func (a *BusAPI) decryptDerived(msg godbus.Message, _ []byte, _ string, _ []byte, _ map[string]godbus.Variant) ([]byte, *godbus.Error) {
	return bytesReply(a.busCallKey(&msg, api.MethodDecryptDerived))
}

func bytesReply(v any, e *godbus.Error) ([]byte, *godbus.Error) {
	if e != nil {
		return nil, e
	}
	b, _ := v.([]byte)
	return b, nil
}

// fastPathSignatures are the Key methods FastPath serves from keyMethods,
// for Export to check against the shipped XML with the method table.
func fastPathSignatures() map[string]string {
	sigs := make(map[string]string, len(keyMethods))
	for name, m := range keyMethods {
		sigs[name] = m.sig
	}
	return sigs
}
