package modrt_test

import (
	"testing"

	godbus "github.com/godbus/dbus/v5"

	"github.com/edgev2/edgev2/internal/testenv"
	rtapi "github.com/edgev2/edgev2/modrt/api"
)

// TestModrtdClosesDescriptorsACallerAttaches: ImportImage is the one
// modrtd method that takes a descriptor (and closes it), yet a bus caller
// may attach them to any call — as an extra argument, inside a variant,
// to ImportImage with another signature or on another object — and the
// bus passes them on; godbus never closes what it receives. None may stay
// open in modrtd, which would run out of descriptors (and with them its
// module sockets and its containerd connection).
func TestModrtdClosesDescriptorsACallerAttaches(t *testing.T) {
	testenv.RequireRoot(t)
	d := testenv.StartDevice(t, testenv.DeviceOptions{Modrtd: &testenv.Daemon{}})
	module := godbus.ObjectPath(string(rtapi.ObjectPath) + "/" + rtapi.Collection + "/nope")
	testenv.CheckAttachedFDsAreClosed(t, "modrtd", d.Daemon(testenv.Modrtd).Pid(), d.Bus.ConnAs(t, testenv.OtherUser), rtapi.BusName, func(fd godbus.UnixFD) []testenv.FDCall {
		return []testenv.FDCall{
			{Path: rtapi.ObjectPath, Method: rtapi.Interface + "." + rtapi.MethodListModules, Args: []any{fd}},
			{Path: rtapi.ObjectPath, Method: rtapi.Interface + "." + rtapi.MethodGetSystemInfo, Args: []any{map[string]godbus.Variant{"fd": godbus.MakeVariant(fd)}}},
			{Path: rtapi.ObjectPath, Method: rtapi.Interface + "." + rtapi.MethodImportImage, Args: []any{fd}}, // refused: the method closes it
			{Path: rtapi.ObjectPath, Method: rtapi.Interface + "." + rtapi.MethodImportImage, Args: []any{fd, fd}},
			{Path: module, Method: rtapi.Interface + "." + rtapi.MethodImportImage, Args: []any{fd}},
			{Path: rtapi.ObjectPath, Method: rtapi.MethodImportImage, Args: []any{fd}}, // no interface header
			{Path: module, Method: rtapi.MethodImportImage, Args: []any{fd}},
			{Path: module, Method: rtapi.ModuleInterface + "." + rtapi.MethodGetLogs, Args: []any{map[string]godbus.Variant{"fd": godbus.MakeVariant(fd)}}},
			{Path: rtapi.ObjectPath, Method: "org.freedesktop.DBus.Peer.Ping", Args: []any{fd}},
		}
	})
}
