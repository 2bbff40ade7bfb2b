package dbus

import (
	"context"
	"fmt"
	"log/slog"

	godbus "github.com/godbus/dbus/v5"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/label"
)

// Adapter is the plumbing a service's D-Bus adapter shares with the others:
// polkit authorization of a call with the service's detail key, failing a
// call (log, then the caller-safe org.edgev2.Error reply), and resolving the
// child object a call addresses. It holds no service logic and names no
// service: the detail key (key_id, cert_id, module_id) is the service's.
//
// An adapter embeds one and lets its methods stay one screen each:
//
//	type BusAPI struct {
//		bus.Adapter
//		svc *Service
//	}
//
//	func NewBusAPI(ctx context.Context, svc *Service, auth bus.Authority, srv *bus.Server, log *slog.Logger) *BusAPI {
//		a := &BusAPI{Adapter: bus.Adapter{Ctx: ctx, Auth: auth, Server: srv, Log: log, DetailKey: api.DetailCertID}, svc: svc}
//		srv.Root(bus.Interface{Name: api.Interface, Methods: map[string]any{"DeleteCertificate": a.deleteCertificate}})
//		srv.AddCollection(bus.Collection{Name: api.Collection, ...})
//		a.GuardReads(api.ActionRead) // CanRead and CanReceive by the read action
//		return a
//	}
//
//	// A root method: authorize on the id the caller names, then call the service.
//	func (a *BusAPI) deleteCertificate(msg godbus.Message, id string) *godbus.Error {
//		if e := a.Authorize(bus.CallOf(msg), api.ActionManage, id); e != nil {
//			return e
//		}
//		if err := a.svc.Delete(a.Ctx, id); err != nil {
//			return a.Fail("DeleteCertificate", err)
//		}
//		return nil
//	}
//
//	// A child method: Child authorizes before it says whether the object exists.
//	func (a *BusAPI) renew(msg godbus.Message) *godbus.Error {
//		id, e := a.Child(msg, api.ActionManage)
//		if e != nil {
//			return e
//		}
//		...
//	}
//
// Calls with more details than the entity id (certs' issued_cert_id)
// use AuthorizeDetails with Details(id) extended.
type Adapter struct {
	Ctx    context.Context
	Auth   Authority
	Server *Server
	Log    *slog.Logger
	// DetailKey is the polkit detail naming the entity a call is about
	// ("key_id"); the service's api package owns the name.
	DetailKey string
	// DetailOnRoot also names the service itself, with an empty id
	// (identity's rules read module_id "" as the device).
	DetailOnRoot bool
}

// Details are the polkit details naming entity id ("" for the service:
// none, or the detail key with "" if DetailOnRoot).
func (a *Adapter) Details(id string) map[string]string {
	if id == "" && !a.DetailOnRoot {
		return nil
	}
	return map[string]string{a.DetailKey: id}
}

// Authorize asks polkit (through the cache) whether call may perform action
// on entity id ("" for the service); nil means yes, else the
// NotAuthorized or InteractiveAuthorizationRequired reply.
func (a *Adapter) Authorize(call Call, action, id string) *godbus.Error {
	return a.AuthorizeDetails(call, action, a.Details(id))
}

// AuthorizeDetails is Authorize with details of the caller's choosing.
func (a *Adapter) AuthorizeDetails(call Call, action string, details map[string]string) *godbus.Error {
	return a.named(a.Auth.Authorize(a.Ctx, call, action, details), action, details)
}

// named makes polkit's refusal of action name the entity it was about, by
// the service's detail key (`not authorized for org.edgev2.keys.use on
// key_id "k"`), so the caller sees which grant it lacks; other errors pass.
func (a *Adapter) named(e *godbus.Error, action string, details map[string]string) *godbus.Error {
	id, ok := details[a.DetailKey]
	if !ok || a.DetailKey == "" || !isDenial(e, action) {
		return e
	}
	return NewError(ErrNotAuthorized, fmt.Sprintf("%s on %s %s", denialText(action), a.DetailKey, quoteID(id)))
}

// quoteID quotes an id for a message, cut after label.MaxIDLen bytes: ids
// that reach here unvalidated (a root method's argument) can be huge.
func quoteID(id string) string {
	if len(id) <= label.MaxIDLen {
		return fmt.Sprintf("%q", id)
	}
	return fmt.Sprintf("%q... (%d bytes)", id[:label.MaxIDLen], len(id))
}

// MayReceive reports whether bus peer may receive a signal about entity id
// under action (Server.CanReceive).
func (a *Adapter) MayReceive(peer, action, id string) bool {
	return MayReceive(a.Ctx, a.Auth, peer, action, a.Details(id))
}

// GuardReads makes the server authorize property reads, introspection of
// children and GetManagedObjects, and the delivery of signals about an
// entity, by readAction on that entity.
func (a *Adapter) GuardReads(readAction string) {
	a.Server.CanRead = func(call Call, id string) *godbus.Error { return a.Authorize(call, readAction, id) }
	a.Server.CanReceive = func(peer, id string) bool { return a.MayReceive(peer, readAction, id) }
}

// Fail turns a failed operation into its reply: internal failures
// (fault.Failed, fault.Unavailable) are logged as errors with their
// detail, refusals (not found, invalid arguments...) at debug level; the
// caller gets only the caller-safe message, under the org.edgev2.Error
// name of its kind (ToError).
func (a *Adapter) Fail(op string, err error) *godbus.Error {
	if k := fault.KindOf(err); k == fault.Failed || k == fault.Unavailable {
		a.Log.Error(op+" failed", "err", err)
	} else {
		a.Log.Debug(op+" refused", "err", err)
	}
	return ToError(err)
}

// Child resolves the entity a child-object call is addressed to: it checks
// the path names an id of one of the server's collections, authorizes the
// call for action on that id, and only then checks that it exists, so a
// caller who may not act on an id learns nothing about whether it exists.
func (a *Adapter) Child(msg godbus.Message, action string) (string, *godbus.Error) {
	id, e := a.Server.PathID(msg)
	if e != nil {
		return "", e
	}
	if e := a.Authorize(CallOf(msg), action, id); e != nil {
		return "", e
	}
	if e := a.Server.Exists(msg); e != nil {
		return "", e
	}
	return id, nil
}
