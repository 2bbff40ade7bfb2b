package fault_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/edgev2/edgev2/fault"
)

var allKinds = []fault.Kind{fault.Failed, fault.NotFound, fault.AlreadyExists, fault.InvalidArgs,
	fault.NotAuthorized, fault.Unavailable, fault.ReadOnly, fault.NotSupported}

func TestHTTPStatusOfEachKind(t *testing.T) {
	want := map[fault.Kind]int{
		fault.Failed: 500, fault.NotFound: 404, fault.AlreadyExists: 409, fault.InvalidArgs: 400,
		fault.NotAuthorized: 403, fault.Unavailable: 503, fault.ReadOnly: 409, fault.NotSupported: 500,
	}
	for _, k := range allKinds {
		if got := k.HTTPStatus(); got != want[k] {
			t.Errorf("%v.HTTPStatus() = %d, want %d", k, got, want[k])
		}
		err := fmt.Errorf("context: %w", fault.New(k, "x"))
		if got := fault.HTTPStatus(err); got != want[k] {
			t.Errorf("HTTPStatus(wrapped %v) = %d, want %d", k, got, want[k])
		}
	}
	if got := fault.HTTPStatus(errors.New("plain")); got != 500 {
		t.Errorf("HTTPStatus(plain error) = %d, want 500", got)
	}
}

func TestDBusNameRoundTrips(t *testing.T) {
	for _, k := range allKinds {
		name := k.DBusName()
		if name != "org.edgev2.Error."+k.String() {
			t.Errorf("%v.DBusName() = %q", k, name)
		}
		if got := fault.KindOfDBusName(name); got != k {
			t.Errorf("KindOfDBusName(%q) = %v, want %v", name, got, k)
		}
	}
}

// dbusNames are the names a client may read, with their kind.
var dbusNames = []struct {
	name string
	kind fault.Kind
}{
	{"org.edgev2.Error.NotFound", fault.NotFound},
	{"org.edgev2.Error.AccessDenied", fault.NotAuthorized},
	{"org.edgev2.Error.NotConfigured", fault.Unavailable},
	{"org.freedesktop.DBus.Error.UnknownObject", fault.NotFound},
	{"org.freedesktop.DBus.Error.InvalidArgs", fault.InvalidArgs},
	{"org.freedesktop.DBus.Error.AccessDenied", fault.NotAuthorized},
	{"org.freedesktop.DBus.Error.InteractiveAuthorizationRequired", fault.NotAuthorized},
	{"org.freedesktop.DBus.Error.ServiceUnknown", fault.Unavailable},
	{"org.freedesktop.DBus.Error.NoReply", fault.Unavailable},
	{"org.freedesktop.DBus.Error.NameHasNoOwner", fault.Unavailable},
	{"org.freedesktop.DBus.Error.Disconnected", fault.Unavailable},
	{"org.freedesktop.DBus.Error.NotSupported", fault.NotSupported},
	{"org.freedesktop.DBus.Error.Failed", fault.Failed},
	{"org.example.Unknown", fault.Failed},
	{"org.edgev2.Error.", fault.Failed},
}

func TestKindOfDBusName(t *testing.T) {
	for _, c := range dbusNames {
		if got := fault.KindOfDBusName(c.name); got != c.kind {
			t.Errorf("KindOfDBusName(%q) = %v, want %v", c.name, got, c.kind)
		}
	}
}
