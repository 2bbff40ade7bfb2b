package dbus

import (
	"fmt"
	"sort"
	"strings"

	godbus "github.com/godbus/dbus/v5"
)

// ParseOptions checks a trailing a{sv} against the keys a method accepts
// (key → D-Bus signature, e.g. "ay", "s", "t", "b") and returns the values.
// Unknown keys and values of the wrong type are InvalidArgs naming them.
func ParseOptions(opts map[string]godbus.Variant, accepted map[string]string) (map[string]any, *godbus.Error) {
	out := make(map[string]any, len(opts))
	for k, v := range opts {
		want, ok := accepted[k]
		if !ok {
			names := make([]string, 0, len(accepted))
			for n := range accepted {
				names = append(names, n)
			}
			sort.Strings(names)
			if len(names) == 0 {
				return nil, NewError(ErrInvalidArgs, fmt.Sprintf("unknown option %q (this method takes none)", k))
			}
			return nil, NewError(ErrInvalidArgs, fmt.Sprintf("unknown option %q (accepted: %s)", k, strings.Join(names, ", ")))
		}
		if got := v.Signature().String(); got != want {
			return nil, NewError(ErrInvalidArgs, fmt.Sprintf("option %q must have type %s, got %s", k, want, got))
		}
		out[k] = v.Value()
	}
	return out, nil
}
