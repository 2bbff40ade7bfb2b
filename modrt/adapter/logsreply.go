package adapter

import (
	"os"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	rtapi "github.com/edgev2/edgev2/modrt/api"
)

// LogsReplier answers GetLogs itself (a bus.FDReplier) so the runtime's
// copy of the pipe it hands out is closed as soon as the reply carrying it
// has been sent.
type LogsReplier struct{ *bus.FDReplier }

// NewLogsReplier makes a replier; pass Option to the bus connection and
// Attach the BusAPI once it exists. Until then godbus dispatches GetLogs to
// the BusAPI's method table, which refuses it.
func NewLogsReplier() *LogsReplier {
	r := bus.NewFDReplier()
	r.TakesFDs = takesFDs
	return &LogsReplier{r}
}

// takesFDs reports whether call is ImportImage, the one method that takes
// a descriptor (which it closes), as godbus will dispatch it: every other
// descriptor a caller attaches to a call is closed on arrival, or the
// runtime would keep each one.
func takesFDs(call *godbus.Message) bool {
	iface, member, path := bus.CallHeaders(call)
	sig, _ := call.Headers[godbus.FieldSignature].Value().(godbus.Signature)
	return member == rtapi.MethodImportImage && (iface == rtapi.Interface || iface == "") &&
		path == rtapi.ObjectPath && sig.String() == "h"
}

// Attach starts serving GetLogs through api.
func (l *LogsReplier) Attach(api *BusAPI) { l.serve(api.Server.Conn(), api.openLogs) }

// serve answers GetLogs on any module path with open.
func (l *LogsReplier) serve(conn *godbus.Conn, open func(godbus.Message, map[string]godbus.Variant) (*os.File, *godbus.Error)) {
	prefix := string(rtapi.ObjectPath) + "/" + rtapi.Collection + "/"
	l.Handle(bus.FDRoute{
		Conn: conn, Interface: rtapi.ModuleInterface, Member: rtapi.MethodGetLogs,
		Path: func(p godbus.ObjectPath) bool { return len(p) > len(prefix) && string(p[:len(prefix)]) == prefix },
		Serve: func(call *godbus.Message) ([]any, *os.File, *godbus.Error) {
			opts, ok := bus.OptionsArg(call)
			if !ok {
				return nil, nil, &godbus.ErrMsgInvalidArg // as godbus would answer
			}
			f, e := open(*call, opts)
			if e != nil {
				return nil, nil, e
			}
			return []any{godbus.UnixFD(f.Fd())}, f, nil
		},
	})
}

// getLogsUnhooked is the method-table GetLogs, reached only when the bus
// connection lacks the LogsReplier (its reply would leave the runtime no
// moment to close the pipe).
func (a *BusAPI) getLogsUnhooked(godbus.Message, map[string]godbus.Variant) (godbus.UnixFD, *godbus.Error) {
	return -1, bus.NewError(bus.ErrUnavailable, "GetLogs is not served on this connection")
}
