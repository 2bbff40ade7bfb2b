package adapter_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

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
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	fd := godbus.UnixFD(r.Fd())
	other := d.Bus.ConnAs(t, testenv.OtherUser)
	pid := d.Daemon(testenv.Identityd).Pid()
	before := openFDs(t, pid)
	const rounds = 20
	for range rounds {
		for _, c := range []struct {
			method string
			args   []any
		}{
			{api.Interface + ".GetDeviceIdentity", []any{fd}},
			{api.Interface + ".OpenModuleSigner", []any{map[string]godbus.Variant{"fd": godbus.MakeVariant(fd)}}},
			{"org.freedesktop.DBus.Peer.Ping", []any{fd}},
		} {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			other.Object(api.BusName, api.ObjectPath).CallWithContext(ctx, c.method, 0, c.args...)
			cancel()
		}
	}
	after := openFDs(t, pid)
	t.Logf("identityd holds %d descriptors before, %d after %d calls with one attached", before, after, rounds*3)
	if after-before > 8 {
		t.Fatalf("identityd holds %d descriptors after %d refused calls that each attached one (%d before); they leak", after, rounds*3, before)
	}
}

func openFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
