package adapter

import (
	"sync/atomic"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/keys/api"
)

// FastPath serves org.edgev2.Keys1.Key calls and OpenSession from the bus
// connection's read loop, before godbus dispatches them by reflection
// (reflect.Value.Call on a freshly built argument list, per call).
//
// godbus offers no per-method hook that keeps its method tables: a custom
// Handler would have to replace every export. Its incoming interceptor sees
// each message first, though, and the read loop dispatches on msg.Type
// after it; the fast path takes the calls it serves and sets their type to
// 0, which the loop ignores (godbus v5.2.4, pinned in go.mod;
// TestKeydBusFastPathServesKeyCalls fails if that changes).
type FastPath struct {
	target atomic.Pointer[BusAPI]
	conn   atomic.Pointer[godbus.Conn] // the connection whose read loop calls intercept
	served atomic.Uint64
}

// NewFastPath makes a fast path; pass Option to the bus connection and
// Attach the BusAPI once it exists. Until then godbus serves every call.
func NewFastPath() *FastPath { return &FastPath{} }

// Option is the connection option that installs the fast path.
func (f *FastPath) Option() godbus.ConnOption {
	return godbus.WithIncomingInterceptor(f.intercept)
}

// Attach starts serving through a.
func (f *FastPath) Attach(a *BusAPI) {
	f.conn.Store(a.Server.Conn())
	f.target.Store(a)
}

// Served is how many calls the fast path answered (for tests and stats).
func (f *FastPath) Served() uint64 { return f.served.Load() }

func (f *FastPath) intercept(msg *godbus.Message) {
	// No keyd method takes a descriptor: those a caller attaches are
	// closed before anything else, whoever answers the call.
	bus.CloseAttachedFDs(f.conn.Load(), msg)
	if msg.Type != godbus.TypeMethodCall {
		return
	}
	a := f.target.Load()
	if a == nil {
		return
	}
	iface, member, path := bus.CallHeaders(msg)
	switch {
	case iface == api.KeyInterface && keyMethods[member] != nil:
		msg.Type = 0 // ours now: godbus's loop skips it
		f.served.Add(1)
		a.pool.run(func() { a.serveBusKeyCall(msg, member) })
	case iface == api.Interface && member == api.MethodOpenSession:
		if path != api.ObjectPath {
			return // godbus answers UnknownMethod/UnknownObject
		}
		msg.Type = 0
		f.served.Add(1)
		go a.serveOpenSession(msg)
	}
}

func (a *BusAPI) serveBusKeyCall(msg *godbus.Message, member string) {
	v, e := a.busCallKey(msg, member)
	a.reply(msg, v, e)
}

// reply answers a call taken by the fast path, as godbus would have: v,
// or e when it is not nil.
func (a *BusAPI) reply(call *godbus.Message, v any, e *godbus.Error) {
	if e != nil {
		bus.Reply(a.Server.Conn(), call, e)
		return
	}
	bus.Reply(a.Server.Conn(), call, nil, v)
}
