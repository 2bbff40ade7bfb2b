package dbus

import (
	"reflect"
	"slices"
	"sync/atomic"
	"syscall"

	godbus "github.com/godbus/dbus/v5"
)

// CloseAttachedFDs closes every descriptor a method call or signal brought
// with it.
// godbus receives them into the process and never closes them, so a
// service that takes no descriptor calls it on every incoming message from
// its connection's interceptor: otherwise any caller could attach
// descriptors to any call until the service has none left. A message
// without the UNIX_FDS header costs a map lookup.
//
// conn is the connection whose read loop is handling msg (nil if not yet
// known). A message may carry descriptors its body names nowhere (UNIX_FDS
// says 8, the body has no 'h'); godbus's transport forgets those, so they
// are read from where it received them: the decoder of conn's unix
// transport, which holds exactly msg's descriptors until the read loop
// reads the next message (godbus v5.2.4, pinned in go.mod;
// TestKeydClosesDescriptorsNoArgumentNames fails if that changes). Without
// conn, or should godbus change, only the descriptors the body names are
// closed.
//
// keep are descriptors the call hands to its method (which closes them).
func CloseAttachedFDs(conn *godbus.Conn, msg *godbus.Message, keep ...int) {
	if msg.Type != godbus.TypeMethodCall && msg.Type != godbus.TypeSignal {
		return // a reply to the service's own call: what it asked for (a Keys session)
	}
	if n, _ := msg.Headers[godbus.FieldUnixFDs].Value().(uint32); n == 0 {
		return
	}
	if fds, ok := receivedFDs(conn); ok {
		for _, fd := range fds {
			if !slices.Contains(keep, fd) {
				syscall.Close(fd)
			}
		}
		return
	}
	if len(keep) > 0 {
		return // which are not the method's is not known: leave all to it
	}
	for _, v := range msg.Body {
		closeFDsIn(reflect.ValueOf(v), nil)
	}
}

// namedFDs are the descriptors msg's body names.
func namedFDs(msg *godbus.Message) []int {
	var fds []int
	for _, v := range msg.Body {
		closeFDsIn(reflect.ValueOf(v), func(fd int) { fds = append(fds, fd) })
	}
	return fds
}

// receivedFDs are the descriptors conn's unix transport received with the
// message its read loop is handling: Conn.transport (*unixTransport).rdr
// (*oobReader).dec (*decoder).fds, read by reflection (reading unexported
// fields is allowed; nothing is written).
func receivedFDs(conn *godbus.Conn) ([]int, bool) {
	if conn == nil {
		return nil, false
	}
	v := reflect.ValueOf(conn).Elem().FieldByName("transport")
	for _, field := range []string{"rdr", "dec", "fds"} {
		for v.IsValid() && (v.Kind() == reflect.Interface || v.Kind() == reflect.Pointer) {
			if v.IsNil() {
				return nil, false
			}
			v = v.Elem()
		}
		if !v.IsValid() || v.Kind() != reflect.Struct {
			return nil, false
		}
		v = v.FieldByName(field)
	}
	if !v.IsValid() || v.Kind() != reflect.Slice || v.Type().Elem().Kind() != reflect.Int {
		return nil, false
	}
	fds := make([]int, v.Len())
	for i := range fds {
		fds[i] = int(v.Index(i).Int())
	}
	return fds, true
}

var unixFDType = reflect.TypeOf(godbus.UnixFD(0))

// closeFDsIn closes each descriptor v holds, or passes it to found
// instead when found is not nil.
func closeFDsIn(v reflect.Value, found func(fd int)) {
	if !v.IsValid() {
		return
	}
	if v.Type() == unixFDType {
		if found != nil {
			found(int(v.Int()))
		} else {
			syscall.Close(int(v.Int()))
		}
		return
	}
	if !v.CanInterface() {
		return
	}
	if vr, ok := v.Interface().(godbus.Variant); ok {
		closeFDsIn(reflect.ValueOf(vr.Value()), found)
		return
	}
	switch v.Kind() {
	case reflect.Interface, reflect.Pointer:
		closeFDsIn(v.Elem(), found)
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return // ay
		}
		for i := range v.Len() {
			closeFDsIn(v.Index(i), found)
		}
	case reflect.Map:
		it := v.MapRange()
		for it.Next() {
			closeFDsIn(it.Key(), found)
			closeFDsIn(it.Value(), found)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				closeFDsIn(v.Field(i), found)
			}
		}
	}
}

// FDCloser is the incoming interceptor of a service that has no other and
// none of whose methods takes a descriptor: it closes those every call or
// signal brings (CloseAttachedFDs). Pass Option to the bus connection and
// Attach the connection once it exists.
type FDCloser struct{ conn atomic.Pointer[godbus.Conn] }

// Option is the connection option that installs the closer.
func (c *FDCloser) Option() godbus.ConnOption {
	return godbus.WithIncomingInterceptor(func(msg *godbus.Message) { CloseAttachedFDs(c.conn.Load(), msg) })
}

// Attach names the connection whose read loop runs the closer; until then
// only the descriptors a message's body names are closed.
func (c *FDCloser) Attach(conn *godbus.Conn) { c.conn.Store(conn) }
