package adapter

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"testing"

	godbus "github.com/godbus/dbus/v5"

	"github.com/edgev2/edgev2/keys/api"
)

const testKeyPath = godbus.ObjectPath("/org/edgev2/Keys1/keys/k_2d1")

// callMsg encodes a method call through godbus (as busctl, gdbus or an
// older client would send it), with serial 9.
func callMsg(t testing.TB, order binary.ByteOrder, headers map[godbus.HeaderField]godbus.Variant, body ...any) []byte {
	t.Helper()
	msg := &godbus.Message{Type: godbus.TypeMethodCall, Headers: headers, Body: body}
	if len(body) > 0 {
		msg.Headers[godbus.FieldSignature] = godbus.MakeVariant(godbus.SignatureOf(body...))
	}
	var buf bytes.Buffer
	if err := msg.EncodeTo(&buf, order); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	order.PutUint32(b[8:], 9)
	return b
}

func keyCall(member string) map[godbus.HeaderField]godbus.Variant {
	return map[godbus.HeaderField]godbus.Variant{
		godbus.FieldPath:      godbus.MakeVariant(testKeyPath),
		godbus.FieldInterface: godbus.MakeVariant(api.KeyInterface),
		godbus.FieldMember:    godbus.MakeVariant(member),
	}
}

func without(h map[godbus.HeaderField]godbus.Variant, f godbus.HeaderField) map[godbus.HeaderField]godbus.Variant {
	delete(h, f)
	return h
}

func with(h map[godbus.HeaderField]godbus.Variant, f godbus.HeaderField, v any) map[godbus.HeaderField]godbus.Variant {
	h[f] = godbus.MakeVariant(v)
	return h
}

var noOpts = map[string]godbus.Variant{}

func TestParseCallTakesTheHotCallsAsGodbusReadsThem(t *testing.T) {
	digest := bytes.Repeat([]byte{3}, 32)
	for _, tc := range []struct {
		name string
		msg  []byte
		lean bool
	}{
		{"Sign", callMsg(t, binary.LittleEndian, keyCall(api.MethodSign), "ecdsa", digest, noOpts), true},
		{"Sign, big endian", callMsg(t, binary.BigEndian, keyCall(api.MethodSign), "ecdsa", digest, noOpts), true},
		{"Sign without interface", callMsg(t, binary.LittleEndian, without(keyCall(api.MethodSign), godbus.FieldInterface), "ecdsa", []byte{}, noOpts), true},
		{"Verify", callMsg(t, binary.LittleEndian, keyCall(api.MethodVerify), "ecdsa", digest, []byte{1, 2}, noOpts), true},
		{"SignDerived", callMsg(t, binary.LittleEndian, keyCall(api.MethodSignDerived), []byte("module/m"), "hmac-sha256", []byte("data")), true},
		{"Sign with options", callMsg(t, binary.LittleEndian, keyCall(api.MethodSign), "ecdsa", digest, map[string]godbus.Variant{"x": godbus.MakeVariant(true)}), false},
		{"Sign of another signature", callMsg(t, binary.LittleEndian, keyCall(api.MethodSign), "ecdsa", digest), false},
		{"Encrypt", callMsg(t, binary.LittleEndian, keyCall(api.MethodEncrypt), "aes-256-gcm", digest, noOpts), false},
		{"another interface", callMsg(t, binary.LittleEndian, with(keyCall(api.MethodSign), godbus.FieldInterface, "org.edgev2.Keys1"), "ecdsa", digest, noOpts), false},
		{"a destination", callMsg(t, binary.LittleEndian, with(keyCall(api.MethodSign), godbus.FieldDestination, "org.edgev2.Keys1"), "ecdsa", digest, noOpts), false},
		{"no reply expected", func() []byte {
			b := callMsg(t, binary.LittleEndian, keyCall(api.MethodSign), "ecdsa", digest, noOpts)
			b[2] = byte(godbus.FlagNoReplyExpected)
			return b
		}(), true},
		{"unknown flags", func() []byte {
			b := callMsg(t, binary.LittleEndian, keyCall(api.MethodSign), "ecdsa", digest, noOpts)
			b[2] = 0x80
			return b
		}(), false},
		{"a string that is not UTF-8", func() []byte {
			b := callMsg(t, binary.LittleEndian, keyCall(api.MethodSign), "ecdsX", digest, noOpts)
			b[bytes.Index(b, []byte("ecdsX"))+4] = 0xff
			return b
		}(), false},
		{"a string with a NUL", func() []byte {
			b := callMsg(t, binary.LittleEndian, keyCall(api.MethodSign), "ecdsX", digest, noOpts)
			b[bytes.Index(b, []byte("ecdsX"))+4] = 0
			return b
		}(), false},
		{"an invalid path", func() []byte {
			b := callMsg(t, binary.LittleEndian, keyCall(api.MethodSign), "ecdsa", digest, noOpts)
			b[bytes.Index(b, []byte("/keys/"))+1] = '-'
			return b
		}(), false},
		{"trailing bytes", func() []byte {
			b := callMsg(t, binary.LittleEndian, keyCall(api.MethodSignDerived), []byte("d"), "hmac-sha256", []byte("x"))
			binary.LittleEndian.PutUint32(b[4:], binary.LittleEndian.Uint32(b[4:])+3)
			return append(b, 0, 0, 0)
		}(), false},
		{"a byte array past the end", func() []byte {
			b := callMsg(t, binary.LittleEndian, keyCall(api.MethodSignDerived), []byte("d"), "hmac-sha256", []byte("x"))
			b[len(b)-5] = 200
			return b
		}(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, ok := parseCall(tc.msg)
			if ok != tc.lean {
				t.Fatalf("parseCall took it: %v, want %v", ok, tc.lean)
			}
			if ok {
				sameAsGodbus(t, tc.msg, c)
			}
		})
	}
}

// sameAsGodbus fails unless godbus decodes m to call c.
func sameAsGodbus(t *testing.T, m []byte, c sessionCall) {
	t.Helper()
	msg, err := godbus.DecodeMessage(bytes.NewReader(m))
	if err != nil {
		t.Fatalf("parseCall took a message godbus refuses: %v", err)
	}
	if g := callOfMessage(msg); g.serial != c.serial || g.noReply != c.noReply || g.iface != c.iface || g.member != c.member || g.path != c.path || g.sig != c.sig {
		t.Fatalf("parseCall read %+v, godbus %+v", c, g)
	}
	if msg.Type != godbus.TypeMethodCall || len(msg.Body) != len(c.body) {
		t.Fatalf("parseCall read body %#v, godbus %#v (type %v)", c.body, msg.Body, msg.Type)
	}
	for i, v := range c.body {
		if m, isMap := v.(map[string]godbus.Variant); isMap {
			if g, ok := msg.Body[i].(map[string]godbus.Variant); !ok || len(g) != 0 || len(m) != 0 {
				t.Fatalf("argument %d: parseCall read %#v, godbus %#v", i, v, msg.Body[i])
			}
			continue
		}
		if !reflect.DeepEqual(v, msg.Body[i]) {
			t.Fatalf("argument %d: parseCall read %#v, godbus %#v", i, v, msg.Body[i])
		}
	}
}

// FuzzParseCall feeds keyd's session decoder bytes a hostile peer could
// send: it must not panic, and any call it takes must be the call godbus
// reads from the same bytes (so the fast path answers exactly as the slow
// one would).
func FuzzParseCall(f *testing.F) {
	f.Add(callMsg(f, binary.LittleEndian, keyCall(api.MethodSign), "ecdsa", []byte{1, 2, 3}, noOpts))
	f.Add(callMsg(f, binary.BigEndian, keyCall(api.MethodVerify), "ecdsa", []byte{1}, []byte{2}, noOpts))
	f.Add(callMsg(f, binary.LittleEndian, keyCall(api.MethodSignDerived), []byte("module/m"), "hmac-sha256", []byte("data")))
	f.Add(callMsg(f, binary.LittleEndian, keyCall(api.MethodSign), "ecdsa", []byte{1}, map[string]godbus.Variant{"a": godbus.MakeVariant("b")}))
	f.Fuzz(func(t *testing.T, m []byte) {
		c, ok := parseCall(m)
		if ok {
			sameAsGodbus(t, m, c)
		}
	})
}
