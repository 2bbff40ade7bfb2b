package dbus

import (
	"os"
	"sync/atomic"

	godbus "github.com/godbus/dbus/v5"
)

// FDReplier answers chosen methods itself so that the service's copy of a
// descriptor a reply hands out is closed as soon as the reply carrying it
// has been sent.
//
// godbus sends a method's reply after the method returns and offers no hook
// after the send; closing earlier would send a closed (or, worse, reused:
// another file of the service's) descriptor, and closing "a while later"
// does the same when the reply is late. Like keys' fast path, the replier
// takes its calls in the connection's incoming interceptor, sets their type
// to 0 (godbus's read loop skips it; godbus v5.2.4 pinned in go.mod), sends
// the reply with Conn.Send, which returns once the message is written, and
// then closes its copy.
type FDReplier struct {
	routes atomic.Pointer[[]FDRoute]
	// AfterReply, if set, runs once a call's reply is sent and its file
	// closed (tests).
	AfterReply func()
	// TakesNoFDs, for a service none of whose methods takes a descriptor,
	// closes those every incoming call or signal brings
	// (CloseAttachedFDs), so callers cannot exhaust the service's. Set it
	// before the connection is made.
	TakesNoFDs bool
	// TakesFDs, for a service some of whose methods take descriptors,
	// reports whether a call is one of those, to its object, with the
	// method's exact signature: the descriptors its body names are then
	// the method's, which closes them; every other descriptor an incoming
	// call or signal brings is closed. Set it before the connection is made.
	TakesFDs func(call *godbus.Message) bool
	conn     atomic.Pointer[godbus.Conn] // the routes' connection
}

// FDRoute is a method an FDReplier answers.
type FDRoute struct {
	Conn      *godbus.Conn // sends the replies
	Interface string       // a call that omits the interface matches too
	Member    string
	Path      func(godbus.ObjectPath) bool
	// Serve answers a call: the reply's body, which passes f as
	// godbus.UnixFD(f.Fd()), or an error. f is closed once the reply is
	// sent.
	Serve func(call *godbus.Message) (body []any, f *os.File, e *godbus.Error)
}

// NewFDReplier makes a replier; pass Option to the bus connection and
// Handle the routes once they exist. Until then godbus dispatches the
// calls to the method table.
func NewFDReplier() *FDReplier { return &FDReplier{} }

// Option is the connection option that installs the replier.
func (r *FDReplier) Option() godbus.ConnOption {
	return godbus.WithIncomingInterceptor(r.intercept)
}

// Handle starts answering routes (replacing any earlier ones).
func (r *FDReplier) Handle(routes ...FDRoute) {
	if len(routes) > 0 {
		r.conn.Store(routes[0].Conn)
	}
	r.routes.Store(&routes)
}

func (r *FDReplier) intercept(msg *godbus.Message) {
	switch {
	case r.TakesFDs != nil && msg.Type == godbus.TypeMethodCall && r.TakesFDs(msg):
		CloseAttachedFDs(r.conn.Load(), msg, namedFDs(msg)...)
	case r.TakesNoFDs || r.TakesFDs != nil:
		CloseAttachedFDs(r.conn.Load(), msg)
	}
	if msg.Type != godbus.TypeMethodCall {
		return
	}
	routes := r.routes.Load()
	if routes == nil {
		return
	}
	iface, member, path := CallHeaders(msg)
	for _, rt := range *routes {
		if member == rt.Member && (iface == rt.Interface || iface == "") && rt.Path(path) {
			msg.Type = 0 // ours now
			go r.serve(rt, msg)
			return
		}
	}
}

func (r *FDReplier) serve(rt FDRoute, call *godbus.Message) {
	body, f, e := rt.Serve(call)
	Reply(rt.Conn, call, e, body...) // returns once the message is written
	if f != nil {
		f.Close()
	}
	if r.AfterReply != nil {
		r.AfterReply()
	}
}

// CallHeaders are the interface (empty if the call omits it), member and
// path of a method call: what an incoming interceptor routes on.
func CallHeaders(msg *godbus.Message) (iface, member string, path godbus.ObjectPath) {
	iface, _ = msg.Headers[godbus.FieldInterface].Value().(string)
	member, _ = msg.Headers[godbus.FieldMember].Value().(string)
	path, _ = msg.Headers[godbus.FieldPath].Value().(godbus.ObjectPath)
	return iface, member, path
}

// Reply answers call on conn as godbus would have: with e, or (e nil) a
// method return carrying body; nothing when the caller asked for no
// reply. It is for calls an incoming interceptor took from godbus's
// dispatch, and returns once the reply is written.
func Reply(conn *godbus.Conn, call *godbus.Message, e *godbus.Error, body ...any) {
	reply := ReplyTo(call, e)
	if reply.Type == 0 {
		return
	}
	if e == nil {
		reply.Body = body
		if len(body) > 0 {
			reply.Headers[godbus.FieldSignature] = godbus.MakeVariant(godbus.SignatureOf(body...))
		}
	}
	conn.Send(reply, nil)
}

// OptionsArg is the a{sv} a call whose only argument it is carries; false
// if the call carries anything else (answer godbus.ErrMsgInvalidArg, as
// godbus would).
func OptionsArg(call *godbus.Message) (map[string]godbus.Variant, bool) {
	if len(call.Body) != 1 {
		return nil, false
	}
	opts, ok := call.Body[0].(map[string]godbus.Variant)
	return opts, ok
}

// ReplyTo is the reply to call carrying e (a method return when e is nil);
// its type is 0 when the caller asked for no reply.
func ReplyTo(call *godbus.Message, e *godbus.Error) *godbus.Message {
	msg := &godbus.Message{Headers: map[godbus.HeaderField]godbus.Variant{
		godbus.FieldReplySerial: godbus.MakeVariant(call.Serial()),
	}}
	if call.Flags&godbus.FlagNoReplyExpected != 0 {
		return msg
	}
	if sender, ok := call.Headers[godbus.FieldSender]; ok {
		msg.Headers[godbus.FieldDestination] = sender
	}
	msg.Type = godbus.TypeMethodReply
	if e != nil {
		msg.Type = godbus.TypeError
		msg.Headers[godbus.FieldErrorName] = godbus.MakeVariant(e.Name)
		msg.Body = e.Body
		if len(msg.Body) > 0 {
			msg.Headers[godbus.FieldSignature] = godbus.MakeVariant(godbus.SignatureOf(msg.Body...))
		}
	}
	return msg
}
