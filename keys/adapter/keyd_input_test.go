package adapter_test

import (
	"context"
	"strings"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/keys"
	"github.com/edgev2/edgev2/keys/api"
)

// TestKeydRefusesPathElementsThatAreNoIDAsInvalidArgs: an object path
// element can unescape to NUL or to bytes that are not UTF-8, which no key
// id is and no D-Bus string (polkit details) can carry. An unprivileged
// caller gets InvalidArgs naming the path — not "polkit is not available" —
// and keyd logs nothing per call. A valid escaped non-ASCII id next to it is
// an ordinary authorisation question.
func TestKeydRefusesPathElementsThatAreNoIDAsInvalidArgs(t *testing.T) {
	k := startKeyd(t, "file", "")
	ctx := ctxT(t)
	if _, err := k.keys.CreateKey(ctx, "é", "sign", nil); err != nil {
		t.Fatal(err)
	}
	other := k.bus.ConnAs(t, testenv.OtherUser)
	root := string(api.ObjectPath) + "/keys/"
	call := func(path godbus.ObjectPath, method string, args ...any) error {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return other.Object(api.BusName, path).CallWithContext(cctx, method, 0, args...).Err
	}
	for _, elem := range []string{"_00", "a_00b", "_ff", "_c3_28", "_e2_82"} {
		path := godbus.ObjectPath(root + elem)
		for _, c := range []struct {
			method string
			args   []any
		}{
			{api.KeyInterface + ".Sign", []any{"hmac-sha256", []byte("x"), map[string]godbus.Variant{}}},
			{"org.freedesktop.DBus.Properties.GetAll", []any{api.KeyInterface}},
			{"org.freedesktop.DBus.Introspectable.Introspect", nil},
		} {
			err := call(path, c.method, c.args...)
			if dbusErrorName(err) != bus.ErrInvalidArgs || !strings.Contains(err.Error(), string(path)) {
				t.Errorf("%s on %s = %v; want %s naming the path", c.method, path, err, bus.ErrInvalidArgs)
			}
		}
	}
	if out := k.svc.Output(); strings.Contains(out, "polkit check failed") || strings.Contains(out, "level=WARN") {
		t.Errorf("keyd logged warnings for refused path elements:\n%s", out)
	}
	// The legitimate non-ASCII id: escaped UTF-8 reaches polkit, which denies
	// this user by default.
	err := call(bus.ChildPath(api.ObjectPath, api.Collection, "é"), api.KeyInterface+".Sign", "hmac-sha256", []byte("x"), map[string]godbus.Variant{})
	if n := dbusErrorName(err); n != bus.ErrNotAuthorized && n != bus.ErrInteractiveNeeded {
		t.Fatalf("Sign on key é as %s = %v; want NotAuthorized", testenv.OtherUser, err)
	}
}

// TestKeydBoundsWhatACallerCanMakeItHold: an unauthorised caller's Sign of
// 2 MiB is refused as InvalidArgs before any polkit round trip or key
// lookup; one of 30 MiB never reaches keyd (the bus policy's 8 MiB message
// limit), so keyd's memory does not grow by it. The largest legitimate
// Sign (1 MiB) still works.
func TestKeydBoundsWhatACallerCanMakeItHold(t *testing.T) {
	k := startKeyd(t, "file", "")
	ctx := ctxT(t)
	key, err := k.keys.CreateKeyPair(ctx, "big", "ec-p256")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := key.Sign(ctx, keys.MechECDSASHA256, make([]byte, keys.MaxData)); err != nil {
		t.Fatalf("Sign of exactly 1 MiB: %v", err)
	}
	before := k.svc.RSSKiB()
	other := k.bus.ConnAs(t, testenv.OtherUser)
	err = other.Object(api.BusName, key.Path).CallWithContext(ctx, api.KeyInterface+".Sign", 0,
		keys.MechECDSASHA256, make([]byte, 2<<20), map[string]godbus.Variant{}).Err
	if dbusErrorName(err) != bus.ErrInvalidArgs || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("unauthorised 2 MiB Sign = %v; want InvalidArgs naming the limit", err)
	}
	// 30 MiB: the bus refuses the message (and drops the sender).
	huge := k.bus.ConnAs(t, testenv.OtherUser)
	hctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	err = huge.Object(api.BusName, key.Path).CallWithContext(hctx, api.KeyInterface+".Sign", 0,
		keys.MechECDSASHA256, make([]byte, 30<<20), map[string]godbus.Variant{}).Err
	if err == nil {
		t.Fatal("a 30 MiB Sign was answered; want the bus to refuse the message")
	}
	after := k.svc.RSSKiB()
	t.Logf("keyd RSS %d KiB before, %d KiB after the 2 MiB and 30 MiB calls (%v)", before, after, err)
	if after-before > 16<<10 {
		t.Fatalf("keyd RSS grew from %d KiB to %d KiB; the refused payloads were held", before, after)
	}
	if _, err := key.Sign(ctx, keys.MechECDSASHA256, []byte("still serving")); err != nil {
		t.Fatalf("Sign after the refused calls: %v", err)
	}
}
