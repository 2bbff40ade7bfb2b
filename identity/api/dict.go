package api

import (
	"fmt"
	"reflect"
	"strings"

	godbus "github.com/godbus/dbus/v5"
)

// The a{sv} results are structs whose fields name their keys in an `sv`
// tag: "key", "key,omitempty" (left out when zero), or ",inline" on a
// pointer to a struct whose keys stand in the same dictionary (present
// when any of them is). ToDict and FromDict convert; every key is written
// once, in the tag.

// ToDict encodes a wire struct (or a pointer to one) as an a{sv}.
func ToDict(v any) map[string]godbus.Variant {
	out := map[string]godbus.Variant{}
	encode(reflect.Indirect(reflect.ValueOf(v)), out)
	return out
}

func encode(rv reflect.Value, out map[string]godbus.Variant) {
	rt := rv.Type()
	for i := 0; i < rt.NumField(); i++ {
		key, opt := tag(rt.Field(i))
		f := rv.Field(i)
		switch {
		case opt == "inline":
			if !f.IsNil() {
				encode(f.Elem(), out)
			}
		case opt == "omitempty" && f.IsZero():
		default:
			out[key] = godbus.MakeVariant(f.Interface())
		}
	}
}

// FromDict decodes an a{sv} into the wire struct v points to. Keys it does
// not know are ignored (services add keys freely); a known key of another
// type is an error.
func FromDict(d map[string]godbus.Variant, v any) error {
	return decode(d, reflect.ValueOf(v).Elem())
}

func decode(d map[string]godbus.Variant, rv reflect.Value) error {
	rt := rv.Type()
	for i := 0; i < rt.NumField(); i++ {
		key, opt := tag(rt.Field(i))
		f := rv.Field(i)
		if opt == "inline" {
			inner := reflect.New(f.Type().Elem())
			if !hasAny(d, inner.Elem().Type()) {
				continue
			}
			if err := decode(d, inner.Elem()); err != nil {
				return err
			}
			f.Set(inner)
			continue
		}
		val, ok := d[key]
		if !ok {
			continue
		}
		x := reflect.ValueOf(val.Value())
		if !x.IsValid() || !x.Type().AssignableTo(f.Type()) {
			return fmt.Errorf("%s is %s, want %s", key, val.Signature(), godbus.SignatureOfType(f.Type()))
		}
		f.Set(x)
	}
	return nil
}

func hasAny(d map[string]godbus.Variant, rt reflect.Type) bool {
	for i := 0; i < rt.NumField(); i++ {
		if key, _ := tag(rt.Field(i)); key != "" {
			if _, ok := d[key]; ok {
				return true
			}
		}
	}
	return false
}

func tag(f reflect.StructField) (key, opt string) {
	key, opt, _ = strings.Cut(f.Tag.Get("sv"), ",")
	return key, opt
}
