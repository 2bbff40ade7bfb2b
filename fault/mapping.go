package fault

import "strings"

// The two wire mappings of a Kind, written once: the org.edgev2.Error.* name a
// D-Bus adapter answers with (and what a client reads back), and the status
// the HTTP APIs (edgelet's management and workload APIs) answer with.

// DBusErrorPrefix starts every org.edgev2.Error.* name.
const DBusErrorPrefix = "org.edgev2.Error."

// DBusName is the D-Bus error name a service answers with for kind k.
func (k Kind) DBusName() string { return DBusErrorPrefix + k.String() }

// dbusKinds are the D-Bus error names a client may receive beyond the
// org.edgev2.Error.<Kind> of each kind, and the kind each stands for.
var dbusKinds = map[string]Kind{
	// edgev2 names that are not kinds of their own.
	DBusErrorPrefix + "AccessDenied":  NotAuthorized, // a restricted Keys session does not cover the call
	DBusErrorPrefix + "NotConfigured": Unavailable,   // the service runs but has no configuration yet
	// The bus's and polkit's own.
	"org.freedesktop.DBus.Error.UnknownObject":                    NotFound,
	"org.freedesktop.DBus.Error.InvalidArgs":                      InvalidArgs,
	"org.freedesktop.DBus.Error.AccessDenied":                     NotAuthorized,
	"org.freedesktop.DBus.Error.InteractiveAuthorizationRequired": NotAuthorized,
	"org.freedesktop.DBus.Error.ServiceUnknown":                   Unavailable,
	"org.freedesktop.DBus.Error.NoReply":                          Unavailable,
	"org.freedesktop.DBus.Error.NameHasNoOwner":                   Unavailable,
	"org.freedesktop.DBus.Error.Disconnected":                     Unavailable,
	"org.freedesktop.DBus.Error.NotSupported":                     NotSupported,
}

// KindOfDBusName is the kind a D-Bus error name stands for: that of an
// org.edgev2.Error.<Kind>, or of one of the other names a client may
// receive; a name it does not know is Failed.
func KindOfDBusName(name string) Kind {
	if k, ok := dbusKinds[name]; ok {
		return k
	}
	if n, ok := strings.CutPrefix(name, DBusErrorPrefix); ok {
		for k, kn := range kindNames {
			if kn == n {
				return k
			}
		}
	}
	return Failed
}

// HTTPStatus is the status an HTTP API answers with for kind k. Every route
// of edgelet's management and workload swagger answers errors as `default:
// ErrorResponse`; the codes it names are 404 for a missing module or
// identity and 409 for creating a module that exists. The numbers are
// written out so that the packages that link fault need not link net/http.
func (k Kind) HTTPStatus() int {
	switch k {
	case NotFound:
		return 404 // Not Found
	case AlreadyExists, ReadOnly:
		return 409 // Conflict: the state on the device, not the request's form, is in the way
	case InvalidArgs:
		return 400 // Bad Request
	case NotAuthorized:
		return 403 // Forbidden
	case Unavailable:
		return 503 // Service Unavailable
	}
	return 500 // Failed, NotSupported: Internal Server Error, the detail in the log
}

// HTTPStatus is the status an HTTP API answers with for err: that of its kind.
func HTTPStatus(err error) int { return KindOf(err).HTTPStatus() }
