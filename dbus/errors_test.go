package dbus_test

import (
	"errors"
	"strings"
	"testing"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/fault"
)

// A fault error crosses the bus and comes back as the same kind with the
// same caller-safe message; a godbus error reply keeps its own name.
func TestErrorsRoundTripEveryKind(t *testing.T) {
	kinds := []fault.Kind{fault.Failed, fault.NotFound, fault.AlreadyExists, fault.InvalidArgs,
		fault.NotAuthorized, fault.Unavailable, fault.ReadOnly, fault.NotSupported}
	for _, k := range kinds {
		reply := bus.ToError(fault.New(k, "the %v message", k))
		if reply.Name != k.DBusName() {
			t.Errorf("ToError(%v).Name = %q, want %q", k, reply.Name, k.DBusName())
		}
		back := bus.FromError(*reply)
		if got := fault.KindOf(back); got != k {
			t.Errorf("FromError(ToError(%v)) is %v", k, got)
		}
		if got, want := fault.Message(back), "the "+k.String()+" message"; got != want {
			t.Errorf("FromError(ToError(%v)) says %q, want %q", k, got, want)
		}
	}
	own := &godbus.Error{Name: "org.freedesktop.DBus.Error.UnknownObject", Body: []any{"no object"}}
	if got := bus.ToError(own); got != own {
		t.Errorf("ToError of a godbus error = %v, want it unchanged", got)
	}
	if got := fault.KindOf(bus.FromError(*own)); got != fault.NotFound {
		t.Errorf("FromError(UnknownObject) is %v, want NotFound", got)
	}
	// An error that is not a fault error is Failed, its text kept for the log.
	if got := bus.ToError(errors.New("open /var/lib/secret: denied")); got.Name != fault.Failed.DBusName() || strings.Contains(got.Body[0].(string), "secret") {
		t.Errorf("ToError of a plain error = %s %v, want Failed with a generic text", got.Name, got.Body)
	}
}
