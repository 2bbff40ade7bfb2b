package adapter_test

import (
	"testing"

	godbus "github.com/godbus/dbus/v5"

	"github.com/edgev2/edgev2/identity/api"
	"github.com/edgev2/edgev2/internal/testenv"
)

// TestIdentitydClosesDescriptorsACallerAttaches: no identityd method takes
// a file descriptor, yet a bus caller may attach them to any call and the
// bus passes them on; godbus never closes what it receives. An
// unprivileged caller's refused calls must not leave them open in
// identityd, which would run out of descriptors.
func TestIdentitydClosesDescriptorsACallerAttaches(t *testing.T) {
	d := testenv.StartDevice(t, testenv.DeviceOptions{
		Keyd:      &testenv.Daemon{},
		Identityd: &testenv.Daemon{Config: "hostname = \"edge-gw-1\"\n[provisioning]\nsource = \"none\"\n"},
	})
	testenv.CheckAttachedFDsAreClosed(t, "identityd", d.Daemon(testenv.Identityd).Pid(), d.Bus.ConnAs(t, testenv.OtherUser), api.BusName, func(fd godbus.UnixFD) []testenv.FDCall {
		return []testenv.FDCall{
			{Path: api.ObjectPath, Method: api.Interface + ".GetDeviceIdentity", Args: []any{fd}},
			{Path: api.ObjectPath, Method: api.Interface + ".OpenModuleSigner", Args: []any{map[string]godbus.Variant{"fd": godbus.MakeVariant(fd)}}},
			{Path: api.ObjectPath, Method: "org.freedesktop.DBus.Peer.Ping", Args: []any{fd}},
		}
	})
}
