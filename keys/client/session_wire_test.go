package client

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"

	godbus "github.com/godbus/dbus/v5"

	"github.com/edgev2/edgev2/keys/api"
)

var keyPath = godbus.ObjectPath("/org/edgev2/Keys1/keys/k_2d1")

func TestAppendCallDecodesAsGodbusDecodesIt(t *testing.T) {
	for _, tc := range []struct {
		name   string
		member string
		iface  string
		args   []any
		lean   bool
	}{
		{"Sign", api.MethodSign, api.KeyInterface, []any{"ecdsa", bytes.Repeat([]byte{7}, 32), map[string]godbus.Variant{}}, true},
		{"Verify", api.MethodVerify, api.KeyInterface, []any{"ecdsa", []byte{1}, []byte{2, 3}, map[string]godbus.Variant{}}, true},
		{"SignDerived", api.MethodSignDerived, api.KeyInterface, []any{[]byte("module/m1"), api.MechHMACSHA256, []byte("data")}, true},
		{"no interface, empty data", api.MethodSign, "", []any{"ecdsa", []byte{}, map[string]godbus.Variant(nil)}, true},
		{"a bool and no args", "Ping", "org.freedesktop.DBus.Peer", nil, true},
		{"bool", "X", api.KeyInterface, []any{true, "é", false}, true},
		{"options are godbus's", api.MethodEncrypt, api.KeyInterface, []any{"aes-256-gcm", []byte("p"), map[string]godbus.Variant{"iv": godbus.MakeVariant([]byte{1})}}, false},
		{"other types are godbus's", "X", api.KeyInterface, []any{uint32(7), []string{"a"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, ok := appendCall([]byte("junk"), 42, keyPath, tc.iface, tc.member, tc.args)
			if ok != tc.lean {
				t.Fatalf("appendCall took it: %v, want %v", ok, tc.lean)
			}
			if ok {
				if !bytes.HasPrefix(b, []byte("junk")) {
					t.Fatal("appendCall overwrote what b held")
				}
				b = b[4:]
			} else {
				var err error
				if b, err = encodeCall(42, keyPath, tc.iface, tc.member, tc.args); err != nil {
					t.Fatal(err)
				}
			}
			msg, err := godbus.DecodeMessage(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("godbus cannot read the call: %v", err)
			}
			if msg.Type != godbus.TypeMethodCall || msg.Serial() != 42 {
				t.Errorf("type %v serial %d, want a method call of serial 42", msg.Type, msg.Serial())
			}
			want := map[godbus.HeaderField]any{godbus.FieldPath: keyPath, godbus.FieldMember: tc.member}
			if tc.iface != "" {
				want[godbus.FieldInterface] = tc.iface
			}
			if len(tc.args) > 0 {
				want[godbus.FieldSignature] = godbus.SignatureOf(tc.args...)
			}
			got := map[godbus.HeaderField]any{}
			for k, v := range msg.Headers {
				got[k] = v.Value()
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("headers %v, want %v", got, want)
			}
			if len(msg.Body) != len(tc.args) {
				t.Fatalf("body %#v, want %#v", msg.Body, tc.args)
			}
			for i, a := range tc.args {
				if m, isMap := a.(map[string]godbus.Variant); isMap && len(m) == 0 {
					if g, _ := msg.Body[i].(map[string]godbus.Variant); len(g) != 0 {
						t.Errorf("argument %d is %#v, want an empty a{sv}", i, msg.Body[i])
					}
					continue
				}
				if !reflect.DeepEqual(msg.Body[i], a) {
					t.Errorf("argument %d is %#v, want %#v", i, msg.Body[i], a)
				}
			}
		})
	}
}

// replyMsg encodes a reply as keyd (or anything else) might, through godbus.
func replyMsg(t testing.TB, typ godbus.Type, replySerial uint32, errName string, body ...any) []byte {
	t.Helper()
	msg := &godbus.Message{Type: typ, Headers: map[godbus.HeaderField]godbus.Variant{}, Body: body}
	if typ == godbus.TypeMethodReply || typ == godbus.TypeError {
		msg.Headers[godbus.FieldReplySerial] = godbus.MakeVariant(replySerial)
	}
	if errName != "" {
		msg.Headers[godbus.FieldErrorName] = godbus.MakeVariant(errName)
	}
	if typ == godbus.TypeSignal {
		msg.Headers[godbus.FieldPath] = godbus.MakeVariant(keyPath)
		msg.Headers[godbus.FieldInterface] = godbus.MakeVariant(api.KeyInterface)
		msg.Headers[godbus.FieldMember] = godbus.MakeVariant("Changed")
	}
	if len(body) > 0 {
		msg.Headers[godbus.FieldSignature] = godbus.MakeVariant(godbus.SignatureOf(body...))
	}
	var buf bytes.Buffer
	if err := msg.EncodeTo(&buf, binary.LittleEndian); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	binary.LittleEndian.PutUint32(b[8:], 9)
	return b
}

func bigEndian(t testing.TB, typ godbus.Type, replySerial uint32, body ...any) []byte {
	t.Helper()
	msg := &godbus.Message{Type: typ, Headers: map[godbus.HeaderField]godbus.Variant{
		godbus.FieldReplySerial: godbus.MakeVariant(replySerial),
		godbus.FieldSignature:   godbus.MakeVariant(godbus.SignatureOf(body...)),
	}, Body: body}
	var buf bytes.Buffer
	if err := msg.EncodeTo(&buf, binary.BigEndian); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestDecodeResultReadsWhatAReplyCarries(t *testing.T) {
	for _, tc := range []struct {
		name   string
		msg    []byte
		serial uint32
		want   result
	}{
		{"signature", replyMsg(t, godbus.TypeMethodReply, 5, "", []byte{1, 2, 3}), 5, result{kind: 'a', bytes: []byte{1, 2, 3}}},
		{"empty signature", replyMsg(t, godbus.TypeMethodReply, 5, "", []byte{}), 5, result{kind: 'a', bytes: []byte{}}},
		{"verified", replyMsg(t, godbus.TypeMethodReply, 6, "", true), 6, result{kind: 'b', bool: true}},
		{"not verified", replyMsg(t, godbus.TypeMethodReply, 6, "", false), 6, result{kind: 'b'}},
		{"no body", replyMsg(t, godbus.TypeMethodReply, 7, ""), 7, result{}},
		{"other bodies through godbus", replyMsg(t, godbus.TypeMethodReply, 8, "", []string{"a", "b"}, uint32(3)), 8, result{kind: 'v', vals: []any{[]string{"a", "b"}, uint32(3)}}},
		{"big endian", bigEndian(t, godbus.TypeMethodReply, 3, []byte{9}), 3, result{kind: 'a', bytes: []byte{9}}},
		{"big endian boolean", bigEndian(t, godbus.TypeMethodReply, 3, true), 3, result{kind: 'b', bool: true}},
		{"error", replyMsg(t, godbus.TypeError, 4, "org.edgev2.Error.NotAuthorized", "not authorized for org.edgev2.keys.use"), 4,
			result{err: godbus.Error{Name: "org.edgev2.Error.NotAuthorized", Body: []any{"not authorized for org.edgev2.keys.use"}}}},
		{"error without a message", replyMsg(t, godbus.TypeError, 4, "org.edgev2.Error.Failed"), 4,
			result{err: godbus.Error{Name: "org.edgev2.Error.Failed", Body: []any{"org.edgev2.Error.Failed"}}}},
		{"error with a non-UTF-8 message", func() []byte {
			b := replyMsg(t, godbus.TypeError, 4, "org.edgev2.Error.Failed", "x")
			b[len(b)-2] = 0xff
			return b
		}(), 4,
			result{err: godbus.Error{Name: "org.edgev2.Error.Failed", Body: []any{"org.edgev2.Error.Failed"}}}},
		{"a signal is no reply", replyMsg(t, godbus.TypeSignal, 0, "", "x"), 0, result{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, serial, err := decodeResult(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			if serial != tc.serial || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v for serial %d, want %+v for %d", got, serial, tc.want, tc.serial)
			}
		})
	}
}

func TestDecodeResultRefusesGarbledReplies(t *testing.T) {
	good := replyMsg(t, godbus.TypeMethodReply, 5, "", []byte{1, 2, 3})
	edit := func(f func(b []byte) []byte) []byte { return f(append([]byte{}, good...)) }
	for _, tc := range []struct {
		name string
		msg  []byte
		want string
	}{
		{"short", good[:10], "shorter than its fixed header"},
		{"byte order", edit(func(b []byte) []byte { b[0] = 'x'; return b }), "byte order"},
		{"version", edit(func(b []byte) []byte { b[3] = 2; return b }), "protocol version"},
		{"body longer than the message", edit(func(b []byte) []byte { b[4]++; return b }), "do not add up"},
		{"fields longer than the message", edit(func(b []byte) []byte { b[12] += 8; return b }), "do not add up"},
		{"truncated", good[:len(good)-1], "do not add up"},
		{"array longer than the body", edit(func(b []byte) []byte { b[len(b)-7]++; return b }), "malformed byte array"},
		{"field of a container type", edit(func(b []byte) []byte { b[16+1] = 2; return b }), "not of a basic type"},
		{"reply serial as a string", edit(func(b []byte) []byte {
			i := bytes.Index(b, []byte{fieldReplySerial, 1, 'u', 0})
			b[i+2] = 's'
			return b
		}), "truncated header field"},
		{"boolean 2", edit(func(b []byte) []byte {
			b = replyMsg(t, godbus.TypeMethodReply, 5, "", true)
			b[len(b)-4] = 2
			return b
		}), "malformed boolean"},
		{"file descriptors", func() []byte {
			msg := &godbus.Message{Type: godbus.TypeMethodReply, Headers: map[godbus.HeaderField]godbus.Variant{
				godbus.FieldReplySerial: godbus.MakeVariant(uint32(1)), godbus.FieldUnixFDs: godbus.MakeVariant(uint32(1))}}
			var buf bytes.Buffer
			msg.EncodeTo(&buf, binary.LittleEndian)
			return buf.Bytes()
		}(), "no file descriptors"},
		{"reply serial 0", replyMsg(t, godbus.TypeMethodReply, 0, "", []byte{1}), "without a reply serial"},
		{"undecodable other body", edit(func(b []byte) []byte {
			b = replyMsg(t, godbus.TypeMethodReply, 5, "", []string{"abc"})
			binary.LittleEndian.PutUint32(b[len(b)-12:], 1<<20)
			return b
		}), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := decodeResult(tc.msg)
			if err == nil {
				t.Fatal("decoded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

func TestFrameLengthRefusesMoreThanTheLimit(t *testing.T) {
	fixed := []byte{'l', 2, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0}
	binary.LittleEndian.PutUint32(fixed[4:], maxReply)
	if _, err := frameLength(fixed); !errors.Is(err, errReplyTooLarge) {
		t.Errorf("a body of %d bytes: %v, want errReplyTooLarge", maxReply, err)
	}
	binary.LittleEndian.PutUint32(fixed[4:], 0xffffffff)
	binary.LittleEndian.PutUint32(fixed[12:], 0xffffffff)
	if _, err := frameLength(fixed); !errors.Is(err, errReplyTooLarge) {
		t.Errorf("lengths of 4 GiB: %v, want errReplyTooLarge", err)
	}
	binary.LittleEndian.PutUint32(fixed[4:], 100)
	binary.LittleEndian.PutUint32(fixed[12:], 9)
	if n, err := frameLength(fixed); err != nil || n != 16+16+100 {
		t.Errorf("frameLength = %d, %v; want 132", n, err)
	}
}

// FuzzDecodeResult feeds the reply decoder bytes a hostile or broken peer
// could send: it must not panic, and whatever it accepts godbus reads the
// same way.
func FuzzDecodeResult(f *testing.F) {
	f.Add(replyMsg(f, godbus.TypeMethodReply, 5, "", []byte{1, 2, 3}))
	f.Add(replyMsg(f, godbus.TypeMethodReply, 6, "", true))
	f.Add(replyMsg(f, godbus.TypeMethodReply, 7, ""))
	f.Add(replyMsg(f, godbus.TypeMethodReply, 8, "", []string{"a"}, map[string]godbus.Variant{"k": godbus.MakeVariant(uint32(1))}))
	f.Add(replyMsg(f, godbus.TypeError, 4, "org.edgev2.Error.NotAuthorized", "no"))
	f.Add(bigEndian(f, godbus.TypeMethodReply, 3, []byte{9}))
	f.Add(replyMsg(f, godbus.TypeSignal, 0, "", "x"))
	f.Fuzz(func(t *testing.T, m []byte) {
		if len(m) >= 16 {
			n, err := frameLength(m[:16])
			if err != nil || n != len(m) {
				return // the reader never hands such a message to decodeResult
			}
		}
		res, serial, err := decodeResult(m)
		if err != nil {
			return
		}
		msg, gerr := godbus.DecodeMessage(bytes.NewReader(m))
		if gerr != nil {
			if res.kind == 'v' {
				t.Fatalf("decodeResult took a body godbus cannot read: %v", gerr)
			}
			return // stricter or laxer in what godbus does not need: fine
		}
		switch msg.Type {
		case godbus.TypeMethodReply, godbus.TypeError:
			if got := msg.Headers[godbus.FieldReplySerial].Value(); got != serial {
				t.Fatalf("reply serial %d, godbus reads %v", serial, got)
			}
		default:
			if serial != 0 {
				t.Fatalf("a message of type %v answers serial %d", msg.Type, serial)
			}
			return
		}
		if msg.Type == godbus.TypeError {
			if name := msg.Headers[godbus.FieldErrorName].Value(); res.err == nil || res.err.(godbus.Error).Name != name {
				t.Fatalf("error %v, godbus reads the name %v", res.err, name)
			}
			return
		}
		switch res.kind {
		case 'a':
			if len(msg.Body) != 1 || !bytes.Equal(msg.Body[0].([]byte), res.bytes) {
				t.Fatalf("bytes %x, godbus reads %#v", res.bytes, msg.Body)
			}
		case 'b':
			if len(msg.Body) != 1 || msg.Body[0] != res.bool {
				t.Fatalf("bool %v, godbus reads %#v", res.bool, msg.Body)
			}
		case 'v':
			if !reflect.DeepEqual(msg.Body, res.vals) {
				t.Fatalf("values %#v, godbus reads %#v", res.vals, msg.Body)
			}
		case 0:
			if len(msg.Body) != 0 {
				t.Fatalf("no body, godbus reads %#v", msg.Body)
			}
		}
	})
}
