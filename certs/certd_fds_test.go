package certs_test

import (
	"testing"

	godbus "github.com/godbus/dbus/v5"

	certsapi "github.com/edgev2/edgev2/certs/api"
	"github.com/edgev2/edgev2/internal/testenv"
)

// TestCertdClosesDescriptorsACallerAttaches: no certd method takes a file
// descriptor, yet a bus caller may attach them to any call and the bus
// passes them on; godbus never closes what it receives. An unprivileged
// caller's calls must not leave them open in certd, which would run out of
// descriptors (and with them its store, its EST connections, its Keys
// session).
func TestCertdClosesDescriptorsACallerAttaches(t *testing.T) {
	d := testenv.StartDevice(t, testenv.DeviceOptions{Keyd: &testenv.Daemon{}, Certd: &testenv.Daemon{}})
	testenv.CheckAttachedFDsAreClosed(t, "certd", d.Daemon(testenv.Certd).Pid(), d.Bus.ConnAs(t, testenv.OtherUser), certsapi.BusName, func(fd godbus.UnixFD) []testenv.FDCall {
		return []testenv.FDCall{
			{Path: certsapi.ObjectPath, Method: certsapi.Interface + "." + certsapi.MethodGetCertificate, Args: []any{"any", fd}},
			{Path: certsapi.ObjectPath, Method: certsapi.Interface + "." + certsapi.MethodListCertificates, Args: []any{fd}},
			{Path: certsapi.ObjectPath, Method: certsapi.Interface + "." + certsapi.MethodCreateCertificate,
				Args: []any{"any", []byte{0x30}, map[string]godbus.Variant{"fd": godbus.MakeVariant(fd)}}},
			{Path: certsapi.ObjectPath, Method: "org.freedesktop.DBus.Peer.Ping", Args: []any{fd}},
		}
	})
}
