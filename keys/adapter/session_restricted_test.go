package adapter_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"strings"
	"testing"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/keys/api"
)

// openRestricted asks for a session restricted by opts on conn.
func openRestricted(t *testing.T, conn *godbus.Conn, opts map[string]godbus.Variant) (*godbus.Conn, error) {
	t.Helper()
	c, err := openSessionSocket(t, conn, opts)
	if err != nil {
		return nil, err
	}
	return peer(t, c), nil
}

func onlySignDerived(id string) map[string]godbus.Variant {
	return map[string]godbus.Variant{"only": godbus.MakeVariant("SignDerived"), "key_id": godbus.MakeVariant(id)}
}

// TestRestrictedSessionServesOnlySignDerivedOnItsKey: a session opened
// with {"only": "SignDerived", "key_id": K} signs with keys derived from K,
// exactly as the bus does, and refuses everything else with AccessDenied —
// also when its opener is root, whom polkit does not scope.
func TestRestrictedSessionServesOnlySignDerivedOnItsKey(t *testing.T) {
	k := startInprocKeyd(t)
	ctx := ctxT(t)
	k.createKeysFor(t, "derive", "master", "other-master")
	k.createKeys(t, "plain")
	k.grant(t, "restricted-other", true, "master", "other-master", "plain")
	for _, who := range []string{"root", testenv.OtherUser} {
		t.Run(who, func(t *testing.T) {
			conn := k.bus.Conn(t)
			if who != "root" {
				conn = k.bus.ConnAs(t, who)
			}
			pc, err := openRestricted(t, conn, onlySignDerived("master"))
			if err != nil {
				t.Fatalf("OpenSession restricted to master: %v", err)
			}
			master := pc.Object("", bus.ChildPath(api.ObjectPath, "keys", "master"))
			var got []byte
			if err := master.Call(api.KeyInterface+".SignDerived", 0, []byte("mod:gen:primary"), "hmac-sha256", []byte("token")).Store(&got); err != nil {
				t.Fatalf("SignDerived on the session's key: %v", err)
			}
			want, err := k.root.Key("master").SignDerived(ctx, []byte("mod:gen:primary"), []byte("token"))
			if err != nil || !hmac.Equal(got, want) {
				t.Fatalf("SignDerived on the restricted session = %x, over the bus %x (%v)", got, want, err)
			}
			derived, err := k.root.Key("master").ExportDerived(ctx, []byte("mod:gen:primary"))
			if err != nil {
				t.Fatal(err)
			}
			mac := hmac.New(sha256.New, derived)
			mac.Write([]byte("token"))
			if !hmac.Equal(got, mac.Sum(nil)) {
				t.Fatal("the restricted session's SignDerived is not HMAC-SHA256 under the derived key")
			}

			other := pc.Object("", bus.ChildPath(api.ObjectPath, "keys", "other-master"))
			plain := pc.Object("", bus.ChildPath(api.ObjectPath, "keys", "plain"))
			root := pc.Object("", api.ObjectPath)
			var out []byte
			var path godbus.ObjectPath
			var v godbus.Variant
			for name, call := range map[string]*godbus.Call{
				"SignDerived on another key":    other.Call(api.KeyInterface+".SignDerived", 0, []byte("d"), "hmac-sha256", []byte("x")),
				"Sign on the session's key":     master.Call(api.KeyInterface+".Sign", 0, "hmac-sha256", []byte("x"), map[string]godbus.Variant{}),
				"Sign on another key":           plain.Call(api.KeyInterface+".Sign", 0, "hmac-sha256", []byte("x"), map[string]godbus.Variant{}),
				"ExportDerived":                 master.Call(api.KeyInterface+".ExportDerived", 0, []byte("mod:gen:primary")),
				"EncryptDerived":                master.Call(api.KeyInterface+".EncryptDerived", 0, []byte("d"), "aes-256-gcm", []byte("x"), map[string]godbus.Variant{}),
				"SignDerived without interface": other.Call("SignDerived", 0, []byte("d"), "hmac-sha256", []byte("x")),
				"CreateKey":                     root.Call(api.Interface+".CreateKey", 0, "new", map[string]godbus.Variant{}),
				"Properties.Get":                master.Call("org.freedesktop.DBus.Properties.Get", 0, api.KeyInterface, "Id"),
			} {
				err := call.Store(&out)
				if name == "CreateKey" {
					err = call.Store(&path)
				} else if name == "Properties.Get" {
					err = call.Store(&v)
				}
				if dbusErrorName(err) != bus.ErrAccessDenied || !strings.Contains(err.Error(), `restricted to SignDerived on key_id "master"`) {
					t.Errorf("%s on a session restricted to SignDerived on master: %v; want %s naming the restriction", name, err, bus.ErrAccessDenied)
				}
			}
			if _, err := k.root.GetKey(ctx, "new"); err == nil {
				t.Fatal("CreateKey through the restricted session made a key")
			}
			if err := pc.Object("", "/").Call("org.freedesktop.DBus.Peer.Ping", 0).Err; err != nil {
				t.Fatalf("Ping on a restricted session: %v", err)
			}
		})
	}
}

// TestRestrictedSessionRefusedForKeyTheOpenerMayNotUse: the restriction
// narrows what the opener may do; it never names a key the opener has no
// grant on. Malformed restrictions are InvalidArgs.
func TestRestrictedSessionRefusedForKeyTheOpenerMayNotUse(t *testing.T) {
	k := startInprocKeyd(t)
	k.createKeysFor(t, "derive", "master", "not-yours")
	k.grant(t, "restricted-refused", true, "master")
	other := k.bus.ConnAs(t, testenv.OtherUser)
	if _, err := openRestricted(t, other, onlySignDerived("not-yours")); dbusErrorName(err) != bus.ErrNotAuthorized {
		t.Fatalf("a session restricted to a key the opener may not use: %v; want NotAuthorized", err)
	}
	for name, opts := range map[string]map[string]godbus.Variant{
		"only without key_id":  {"only": godbus.MakeVariant("SignDerived")},
		"key_id without only":  {"key_id": godbus.MakeVariant("master")},
		"only Sign":            {"only": godbus.MakeVariant("Sign"), "key_id": godbus.MakeVariant("master")},
		"only ExportDerived":   {"only": godbus.MakeVariant("ExportDerived"), "key_id": godbus.MakeVariant("master")},
		"key_id of wrong type": {"only": godbus.MakeVariant("SignDerived"), "key_id": godbus.MakeVariant(uint32(1))},
		"empty key id":         onlySignDerived(""),
	} {
		if _, err := openRestricted(t, other, opts); dbusErrorName(err) != bus.ErrInvalidArgs {
			t.Errorf("OpenSession with %s: %v; want InvalidArgs", name, err)
		}
	}
}
