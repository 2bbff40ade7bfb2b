package dbus

import (
	"reflect"
	"syscall"

	godbus "github.com/godbus/dbus/v5"
)

// CloseAttachedFDs closes every descriptor a message brought with it,
// wherever its body holds one (an argument, an array, a variant, a struct
// or a dict). godbus receives them into the process and never closes them,
// so a service that takes no descriptor calls it on every incoming message
// from its connection's interceptor: otherwise any caller could attach
// descriptors to any call until the service has none left. A message
// without the UNIX_FDS header costs a map lookup.
func CloseAttachedFDs(msg *godbus.Message) {
	if _, ok := msg.Headers[godbus.FieldUnixFDs]; !ok {
		return
	}
	for _, v := range msg.Body {
		closeFDsIn(reflect.ValueOf(v))
	}
}

var unixFDType = reflect.TypeOf(godbus.UnixFD(0))

func closeFDsIn(v reflect.Value) {
	if !v.IsValid() {
		return
	}
	if v.Type() == unixFDType {
		syscall.Close(int(v.Int()))
		return
	}
	if !v.CanInterface() {
		return
	}
	if vr, ok := v.Interface().(godbus.Variant); ok {
		closeFDsIn(reflect.ValueOf(vr.Value()))
		return
	}
	switch v.Kind() {
	case reflect.Interface, reflect.Pointer:
		closeFDsIn(v.Elem())
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return // ay
		}
		for i := range v.Len() {
			closeFDsIn(v.Index(i))
		}
	case reflect.Map:
		it := v.MapRange()
		for it.Next() {
			closeFDsIn(it.Key())
			closeFDsIn(it.Value())
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				closeFDsIn(v.Field(i))
			}
		}
	}
}
