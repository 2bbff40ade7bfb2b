package adapter_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/keys/api"
)

// TestKeyEventsReachOnlyReadersOfThatKey: keys.read is everyone's by
// default, so a rule refusing a uid some keys must hide those keys'
// InterfacesAdded/Removed from it too, and their existence from Introspect,
// while it still hears of the others and root hears of all.
func TestKeyEventsReachOnlyReadersOfThatKey(t *testing.T) {
	k := startKeyd(t, "file", "")
	ctx := ctxT(t)
	k.polkit.AddRule(t, "keys-secret", fmt.Sprintf(`polkit.addRule(function(action, subject) {
  if (action.id == "org.edgev2.keys.read" && subject.user == %q &&
      action.lookup("key_id").indexOf("secret-") == 0) return polkit.Result.NO;
});`, testenv.OtherUser))

	var owner string
	if err := k.conn.BusObject().Call("org.freedesktop.DBus.GetNameOwner", 0, api.BusName).Store(&owner); err != nil {
		t.Fatal(err)
	}
	watch := func(conn *godbus.Conn) chan *godbus.Signal {
		ch := make(chan *godbus.Signal, 256)
		conn.Signal(ch)
		if err := conn.BusObject().Call("org.freedesktop.DBus.AddMatch", 0, "type='signal'").Err; err != nil {
			t.Fatal(err)
		}
		return ch
	}
	root, other := watch(k.bus.Conn(t)), watch(k.bus.ConnAs(t, testenv.OtherUser))
	// until returns the ids named by keyd's signals up to the one about marker.
	until := func(ch chan *godbus.Signal, member, marker string) []string {
		t.Helper()
		var ids []string
		timeout := time.After(20 * time.Second)
		for {
			select {
			case s := <-ch:
				if s.Sender != owner || len(s.Body) == 0 {
					continue
				}
				p, _ := s.Body[0].(godbus.ObjectPath)
				id, _ := bus.UnescapePathElement(strings.TrimPrefix(string(p), string(api.ObjectPath)+"/keys/"))
				ids = append(ids, s.Name[strings.LastIndex(s.Name, ".")+1:]+" "+id)
				if id == marker && strings.HasSuffix(s.Name, "."+member) {
					return ids
				}
			case <-timeout:
				t.Fatalf("no %s of %s within 20 s; got %v", member, marker, ids)
			}
		}
	}

	for _, id := range []string{"secret-a", "secret-b"} {
		if _, err := k.keys.CreateKey(ctx, id, "sign", nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := k.keys.MoveKey(ctx, "secret-b", "secret-c"); err != nil {
		t.Fatal(err)
	}
	if err := k.keys.DeleteKey(ctx, "secret-a"); err != nil {
		t.Fatal(err)
	}
	if _, err := k.keys.CreateKey(ctx, "public-marker", "sign", nil); err != nil {
		t.Fatal(err)
	}
	got := until(root, "InterfacesAdded", "public-marker")
	for _, want := range []string{"InterfacesAdded secret-a", "InterfacesAdded secret-b", "InterfacesRemoved secret-b", "InterfacesAdded secret-c", "InterfacesRemoved secret-a"} {
		if !contains(got, want) {
			t.Errorf("root did not get %s; got %v", want, got)
		}
	}
	if got := until(other, "InterfacesAdded", "public-marker"); len(got) != 1 {
		t.Fatalf("%s, refused keys.read on secret-*, got %v", testenv.OtherUser, got)
	}

	// Introspect and GetAll: a refused key that exists answers as one that does not.
	answer := func(id, method string, args ...any) string {
		err := k.bus.ConnAs(t, testenv.OtherUser).Object(api.BusName, bus.ChildPath(api.ObjectPath, "keys", id)).Call(method, 0, args...).Err
		var de godbus.Error
		if !errors.As(err, &de) {
			return fmt.Sprintf("success (%v)", err)
		}
		return de.Name + ": " + strings.ReplaceAll(fmt.Sprint(de.Body...), id, "ID")
	}
	for _, m := range []struct {
		method string
		args   []any
	}{{"org.freedesktop.DBus.Introspectable.Introspect", nil}, {"org.freedesktop.DBus.Properties.GetAll", []any{api.KeyInterface}}} {
		existing, missing := answer("secret-c", m.method, m.args...), answer("secret-none", m.method, m.args...)
		if existing != missing || !strings.HasPrefix(existing, bus.ErrNotAuthorized) {
			t.Errorf("%s as %s: existing key %q, missing one %q; want the same NotAuthorized", m.method, testenv.OtherUser, existing, missing)
		}
		if got := answer("public-marker", m.method, m.args...); !strings.HasPrefix(got, "success") {
			t.Errorf("%s as %s on a key it may read: %s", m.method, testenv.OtherUser, got)
		}
	}
}

// TestGetManagedObjectsShowsOnlyKeysTheCallerMayRead: the ObjectManager
// listing carries every key's properties (public key, usage); a caller
// refused keys.read on some keys gets the others, as GetAll gives them,
// and not those, while root still gets all.
func TestGetManagedObjectsShowsOnlyKeysTheCallerMayRead(t *testing.T) {
	k := startKeyd(t, "file", "")
	ctx := ctxT(t)
	k.polkit.AddRule(t, "keys-secret", fmt.Sprintf(`polkit.addRule(function(action, subject) {
  if (action.id == "org.edgev2.keys.read" && subject.user == %q &&
      (action.lookup("key_id") || "").indexOf("secret-") == 0) return polkit.Result.NO;
});`, testenv.OtherUser))
	for _, id := range []string{"secret-a", "public-b"} {
		if _, err := k.keys.CreateKey(ctx, id, "sign", nil); err != nil {
			t.Fatal(err)
		}
	}
	managed := func(conn *godbus.Conn) map[string]bool {
		t.Helper()
		var objs map[godbus.ObjectPath]map[string]map[string]godbus.Variant
		if err := conn.Object(api.BusName, api.ObjectPath).Call("org.freedesktop.DBus.ObjectManager.GetManagedObjects", 0).Store(&objs); err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for p, ifs := range objs {
			id, _ := bus.UnescapePathElement(strings.TrimPrefix(string(p), string(api.ObjectPath)+"/keys/"))
			got[id] = len(ifs[api.KeyInterface]) > 0
		}
		return got
	}
	if got := managed(k.bus.Conn(t)); !got["secret-a"] || !got["public-b"] {
		t.Fatalf("root's GetManagedObjects: %v; want both keys with their properties", got)
	}
	got := managed(k.bus.ConnAs(t, testenv.OtherUser))
	if _, leaked := got["secret-a"]; leaked {
		t.Errorf("%s, refused keys.read on secret-a, got it from GetManagedObjects: %v", testenv.OtherUser, got)
	}
	if !got["public-b"] {
		t.Errorf("%s's GetManagedObjects lost the key it may read: %v", testenv.OtherUser, got)
	}
}
