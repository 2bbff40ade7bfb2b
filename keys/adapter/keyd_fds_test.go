package adapter_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/keys"
	"github.com/edgev2/edgev2/keys/api"
)

// TestKeydClosesDescriptorsACallerAttaches: no keyd method takes a file
// descriptor, yet a bus caller may attach them to any call — as an extra
// argument, or inside a variant of the options — and the bus passes them
// on. An unprivileged caller's refused calls, on the fast path, through
// godbus's method tables and on OpenSession, must not leave them open in
// keyd: each would be a descriptor keyd holds until it runs out of them.
func TestKeydClosesDescriptorsACallerAttaches(t *testing.T) {
	k := startKeyd(t, "file", "")
	ctx := ctxT(t)
	key, err := k.keys.CreateKey(ctx, "fds", "sign", nil)
	if err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	fd := godbus.UnixFD(r.Fd())
	other := k.bus.ConnAs(t, testenv.OtherUser)
	calls := []struct {
		path   godbus.ObjectPath
		method string
		args   []any
	}{
		{key.Path, api.KeyInterface + ".Sign", []any{keys.MechHMACSHA256, []byte("x"), map[string]godbus.Variant{}, fd}},
		{key.Path, api.KeyInterface + ".Sign", []any{keys.MechHMACSHA256, []byte("x"), map[string]godbus.Variant{"fd": godbus.MakeVariant(fd)}}},
		{api.ObjectPath, api.Interface + ".GetKey", []any{"fds", fd}},
		{api.ObjectPath, api.Interface + ".OpenSession", []any{map[string]godbus.Variant{}, fd}},
		{api.ObjectPath, "org.freedesktop.DBus.Peer.Ping", []any{fd}},
	}
	before := openFDs(t, k.svc.Pid())
	const rounds = 20
	for range rounds {
		for _, c := range calls {
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			// Answered, refused or not: the answer is not the point.
			other.Object(api.BusName, c.path).CallWithContext(cctx, c.method, 0, c.args...)
			cancel()
		}
	}
	// The calls were answered: whatever keyd holds now, it keeps.
	after := openFDs(t, k.svc.Pid())
	t.Logf("keyd holds %d descriptors before, %d after %d calls with one attached", before, after, rounds*len(calls))
	if after-before > 8 {
		t.Fatalf("keyd holds %d descriptors after %d refused calls that each attached one (%d before); they leak", after, rounds*len(calls), before)
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
