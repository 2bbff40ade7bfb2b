package adapter

import (
	"os"
	"sync/atomic"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	rtapi "github.com/edgev2/edgev2/modrt/api"
)

// LogsReplier answers GetLogs itself so the runtime's copy of the pipe it
// hands out is closed as soon as the reply carrying it has been sent.
//
// godbus sends a method's reply after the method returns and offers no hook
// after the send; closing earlier would send a closed (or reused) fd. Like
// keys.FastPath, the replier takes GetLogs calls in the connection's incoming
// interceptor, sets their type to 0 (godbus's read loop skips it, godbus
// v5.2.4 pinned in go.mod), sends the reply with Conn.Send, which returns
// once the message is written, and then closes its copy.
type LogsReplier struct {
	api atomic.Pointer[logsServer]
	// afterReply, if set, runs once a call's reply is sent and its file
	// closed (tests).
	afterReply func()
}

// logsServer opens the log stream for a call; conn sends the reply.
type logsServer struct {
	conn *godbus.Conn
	path func(godbus.ObjectPath) bool
	open func(msg godbus.Message, opts map[string]godbus.Variant) (*os.File, *godbus.Error)
}

// NewLogsReplier makes a replier; pass Option to the bus connection and
// Attach the BusAPI once it exists. Until then godbus dispatches GetLogs to
// the BusAPI's method table, which refuses it.
func NewLogsReplier() *LogsReplier { return &LogsReplier{} }

// Option is the connection option that installs the replier.
func (l *LogsReplier) Option() godbus.ConnOption {
	return godbus.WithIncomingInterceptor(l.intercept)
}

// Attach starts serving GetLogs through api.
func (l *LogsReplier) Attach(api *BusAPI) {
	prefix := string(rtapi.ObjectPath) + "/" + rtapi.Collection + "/"
	l.api.Store(&logsServer{
		conn: api.Server.Conn(),
		path: func(p godbus.ObjectPath) bool { return len(p) > len(prefix) && string(p[:len(prefix)]) == prefix },
		open: api.openLogs,
	})
}

func (l *LogsReplier) intercept(msg *godbus.Message) {
	if msg.Type != godbus.TypeMethodCall {
		return
	}
	s := l.api.Load()
	if s == nil {
		return
	}
	iface, _ := msg.Headers[godbus.FieldInterface].Value().(string)
	member, _ := msg.Headers[godbus.FieldMember].Value().(string)
	path, _ := msg.Headers[godbus.FieldPath].Value().(godbus.ObjectPath)
	// A call may omit the interface: GetLogs is only the module interface's.
	if (iface != rtapi.ModuleInterface && iface != "") || member != "GetLogs" || !s.path(path) {
		return // godbus answers (or refuses) it
	}
	msg.Type = 0 // ours now
	go l.serve(s, msg)
}

func (l *LogsReplier) serve(s *logsServer, call *godbus.Message) {
	var f *os.File
	var e *godbus.Error
	opts, ok := argOptions(call)
	if !ok {
		e = &godbus.ErrMsgInvalidArg // as godbus would answer
	} else {
		f, e = s.open(*call, opts)
	}
	reply := replyTo(call, e)
	if e == nil {
		reply.Body = []any{godbus.UnixFD(f.Fd())}
		reply.Headers[godbus.FieldSignature] = godbus.MakeVariant(godbus.SignatureOf(reply.Body...))
	}
	if reply.Type != 0 {
		s.conn.Send(reply, nil) // returns once the message is written
	}
	if f != nil {
		f.Close()
	}
	if l.afterReply != nil {
		l.afterReply()
	}
}

// argOptions is the a{sv} a GetLogs call carries.
func argOptions(call *godbus.Message) (map[string]godbus.Variant, bool) {
	if len(call.Body) != 1 {
		return nil, false
	}
	opts, ok := call.Body[0].(map[string]godbus.Variant)
	return opts, ok
}

// replyTo is the reply to call carrying e (a method return when e is nil);
// its type is 0 when the caller asked for no reply.
func replyTo(call *godbus.Message, e *godbus.Error) *godbus.Message {
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

// getLogsUnhooked is the method-table GetLogs, reached only when the bus
// connection lacks the LogsReplier (its reply would leave the runtime no
// moment to close the pipe).
func (a *BusAPI) getLogsUnhooked(godbus.Message, map[string]godbus.Variant) (godbus.UnixFD, *godbus.Error) {
	return -1, bus.NewError(bus.ErrUnavailable, "GetLogs is not served on this connection")
}
