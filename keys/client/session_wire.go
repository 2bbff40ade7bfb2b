// The client side of a Keys session's D-Bus peer protocol, spoken without
// godbus's connection on the hot path: the SASL handshake, method calls
// encoded without reflection, and replies read within a size limit and
// parsed without reflection. Calls and replies of other shapes are still
// encoded and decoded by godbus.

package client

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"

	godbus "github.com/godbus/dbus/v5"

	"github.com/edgev2/edgev2/keys/api"
)

// maxReply bounds one message read from a session: the largest reply keyd
// sends (Decrypt of api.MaxData bytes) fits with room to spare. A longer
// length in a header ends the session before anything is allocated for it.
const maxReply = 4*api.MaxData + 64<<10

// D-Bus message types and header fields (the wire values).
const (
	msgCall   = 1
	msgReturn = 2
	msgError  = 3

	fieldPath        = 1
	fieldInterface   = 2
	fieldMember      = 3
	fieldErrorName   = 4
	fieldReplySerial = 5
	fieldSignature   = 8
	fieldUnixFDs     = 9
)

// authenticate is the client side of the SASL exchange: EXTERNAL with our
// uid (keyd takes any identity: the socket carries the authority), then
// BEGIN. No unix fds are negotiated.
func authenticate(w io.Writer, r *bufio.Reader, uid int) error {
	if _, err := w.Write([]byte("\x00AUTH EXTERNAL " + hex.EncodeToString([]byte(strconv.Itoa(uid))) + "\r\n")); err != nil {
		return err
	}
	line, err := r.ReadSlice('\n')
	if err != nil {
		return fmt.Errorf("session handshake: %w", err)
	}
	if !bytes.HasPrefix(line, []byte("OK ")) {
		return fmt.Errorf("session handshake: keyd answered %q", bytes.TrimSpace(line[:min(len(line), 64)]))
	}
	_, err = w.Write([]byte("BEGIN\r\n"))
	return err
}

// appendCall appends a method call to b, encoded without reflection, and
// reports whether it could: the arguments must be strings, byte slices,
// bools or an empty a{sv} (what Sign, Verify and the Derived methods
// take); anything else is left to encodeCall.
func appendCall(b []byte, serial uint32, path godbus.ObjectPath, iface, member string, args []any) ([]byte, bool) {
	var sigBuf [16]byte
	sig := sigBuf[:0]
	for _, a := range args {
		switch v := a.(type) {
		case string:
			sig = append(sig, 's')
		case []byte:
			sig = append(sig, 'a', 'y')
		case bool:
			sig = append(sig, 'b')
		case map[string]godbus.Variant:
			if len(v) != 0 {
				return b, false
			}
			sig = append(sig, "a{sv}"...)
		default:
			return b, false
		}
	}
	if len(sig) > 255 {
		return b, false
	}
	start := len(b)
	b = append(b, 'l', msgCall, 0, 1, 0, 0, 0, 0) // body length patched below
	b = binary.LittleEndian.AppendUint32(b, serial)
	b = append(b, 0, 0, 0, 0) // header fields length patched below
	fields := len(b)
	b = appendStringField(b, start, fieldPath, 'o', string(path))
	if iface != "" {
		b = appendStringField(b, start, fieldInterface, 's', iface)
	}
	b = appendStringField(b, start, fieldMember, 's', member)
	if len(sig) > 0 {
		b = pad(b, start, 8)
		b = append(b, fieldSignature, 1, 'g', 0, byte(len(sig)))
		b = append(b, sig...)
		b = append(b, 0)
	}
	binary.LittleEndian.PutUint32(b[start+12:], uint32(len(b)-fields))
	b = pad(b, start, 8)
	body := len(b)
	for _, a := range args {
		b = pad(b, start, 4)
		switch v := a.(type) {
		case string:
			b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
			b = append(b, v...)
			b = append(b, 0)
		case []byte:
			b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
			b = append(b, v...)
		case bool:
			x := uint32(0)
			if v {
				x = 1
			}
			b = binary.LittleEndian.AppendUint32(b, x)
		case map[string]godbus.Variant: // empty: its length, then padding to its entries' alignment
			b = binary.LittleEndian.AppendUint32(b, 0)
			b = pad(b, start, 8)
		}
	}
	binary.LittleEndian.PutUint32(b[start+4:], uint32(len(b)-body))
	return b, true
}

func appendStringField(b []byte, start int, code, typ byte, s string) []byte {
	b = pad(b, start, 8)
	b = append(b, code, 1, typ, 0)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
	b = append(b, s...)
	return append(b, 0)
}

// pad appends zeros until the message that starts at start is aligned to n.
func pad(b []byte, start, n int) []byte {
	for (len(b)-start)%n != 0 {
		b = append(b, 0)
	}
	return b
}

// encodeCall encodes a call appendCall cannot, through godbus.
func encodeCall(serial uint32, path godbus.ObjectPath, iface, member string, args []any) ([]byte, error) {
	msg := &godbus.Message{Type: godbus.TypeMethodCall, Headers: map[godbus.HeaderField]godbus.Variant{
		godbus.FieldPath:   godbus.MakeVariant(path),
		godbus.FieldMember: godbus.MakeVariant(member),
	}, Body: args}
	if iface != "" {
		msg.Headers[godbus.FieldInterface] = godbus.MakeVariant(iface)
	}
	if len(args) > 0 {
		msg.Headers[godbus.FieldSignature] = godbus.MakeVariant(godbus.SignatureOf(args...))
	}
	var buf bytes.Buffer
	if err := msg.EncodeTo(&buf, binary.LittleEndian); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	binary.LittleEndian.PutUint32(b[8:], serial) // godbus has no setter for it
	return b, nil
}

// errReplyTooLarge is a message whose header announces more than maxReply.
var errReplyTooLarge = fmt.Errorf("a message on the Keys session is longer than %d bytes", maxReply)

// frameLength reads a message's total length from its 16-byte fixed header.
func frameLength(fixed []byte) (int, error) {
	f, err := api.ParseFrame(fixed)
	if err != nil {
		return 0, err
	}
	if f.Length > maxReply {
		return 0, errReplyTooLarge
	}
	return int(f.Length), nil
}

// reply is a parsed message from keyd.
type reply struct {
	typ         byte
	replySerial uint32
	errName     string
	sig         string
	order       binary.ByteOrder
	body        []byte // the raw body, aliasing the message
}

// parseReply parses the header of one whole message (as framed by
// frameLength) strictly: fields of the types D-Bus defines for them, in
// bounds, no unix fds. The body is kept raw; values reads it.
func parseReply(m []byte) (reply, error) {
	var r reply
	if len(m) < 16 {
		return r, errors.New("message shorter than its fixed header")
	}
	if r.order = api.ByteOrder(m[0]); r.order == nil {
		return r, api.ErrByteOrder
	}
	if m[3] != 1 {
		return r, fmt.Errorf("protocol version %d", m[3])
	}
	r.typ = m[1]
	bodyLen := uint64(r.order.Uint32(m[4:8]))
	fieldsEnd := 16 + uint64(r.order.Uint32(m[12:16]))
	bodyStart := (fieldsEnd + 7) &^ 7
	if bodyStart+bodyLen != uint64(len(m)) {
		return r, errors.New("lengths do not add up to the message")
	}
	hasSerial := false
	p := 16
	for uint64(p) < fieldsEnd {
		p = (p + 7) &^ 7
		if uint64(p)+4 > fieldsEnd {
			return r, errors.New("truncated header field")
		}
		code, sigLen, typ, nul := m[p], m[p+1], m[p+2], m[p+3]
		if sigLen != 1 || nul != 0 {
			return r, fmt.Errorf("header field %d is not of a basic type", code)
		}
		p += 4
		var s string
		var u uint32
		switch typ {
		case 'u':
			p = (p + 3) &^ 3
			if uint64(p)+4 > fieldsEnd {
				return r, errors.New("truncated header field")
			}
			u = r.order.Uint32(m[p:])
			p += 4
		case 's', 'o':
			if uint64(p)+4 > fieldsEnd {
				return r, errors.New("truncated header field")
			}
			n := uint64(r.order.Uint32(m[p:]))
			if uint64(p)+4+n+1 > fieldsEnd || m[uint64(p)+4+n] != 0 {
				return r, errors.New("truncated header field")
			}
			s = string(m[p+4 : uint64(p)+4+n])
			p += 4 + int(n) + 1
		case 'g':
			n := int(m[p])
			if uint64(p+1+n+1) > fieldsEnd || m[p+1+n] != 0 {
				return r, errors.New("truncated header field")
			}
			s = string(m[p+1 : p+1+n])
			p += 1 + n + 1
		default:
			return r, fmt.Errorf("header field %d has type %q", code, typ)
		}
		want := byte(0)
		switch code {
		case fieldPath:
			want = 'o'
		case fieldInterface, fieldMember, fieldErrorName, 6, 7: // 6, 7: destination, sender
			want = 's'
		case fieldReplySerial, fieldUnixFDs:
			want = 'u'
		case fieldSignature:
			want = 'g'
		}
		if want != 0 && typ != want {
			return r, fmt.Errorf("header field %d has type %q, not %q", code, typ, want)
		}
		switch code {
		case fieldErrorName:
			r.errName = s
		case fieldReplySerial:
			r.replySerial, hasSerial = u, true
		case fieldSignature:
			r.sig = s
		case fieldUnixFDs:
			if u != 0 {
				return r, errors.New("a Keys session passes no file descriptors")
			}
		}
	}
	if uint64(p) != fieldsEnd {
		return r, errors.New("header fields overrun their length")
	}
	if (r.typ == msgReturn || r.typ == msgError) && (!hasSerial || r.replySerial == 0) {
		return r, errors.New("a reply without a reply serial")
	}
	if r.typ == msgError && r.errName == "" {
		return r, errors.New("an error without an error name")
	}
	r.body = m[bodyStart:]
	return r, nil
}

// bytesBody reads a body of signature "ay" (copied out of the message).
func (r *reply) bytesBody() ([]byte, bool) {
	if r.sig != "ay" || len(r.body) < 4 {
		return nil, false
	}
	n := uint64(r.order.Uint32(r.body))
	if 4+n != uint64(len(r.body)) {
		return nil, false
	}
	return append([]byte{}, r.body[4:]...), true
}

// boolBody reads a body of signature "b".
func (r *reply) boolBody() (bool, bool) {
	if r.sig != "b" || len(r.body) != 4 {
		return false, false
	}
	switch r.order.Uint32(r.body) {
	case 0:
		return false, true
	case 1:
		return true, true
	}
	return false, false
}

// errorText is an error reply's message: its first argument when that is
// a string (as D-Bus has it), else its name.
func (r *reply) errorText() string {
	if len(r.sig) == 0 || r.sig[0] != 's' || len(r.body) < 4 {
		return r.errName
	}
	n := uint64(r.order.Uint32(r.body))
	if 4+n+1 > uint64(len(r.body)) || r.body[4+n] != 0 || !utf8.Valid(r.body[4:4+n]) {
		return r.errName
	}
	return string(r.body[4 : 4+n])
}

// values decodes the body of message m (whose reply r is) through godbus,
// for replies the fast readers above do not take.
func (r *reply) values(m []byte) ([]any, error) {
	if r.sig == "" {
		return nil, nil
	}
	msg, err := godbus.DecodeMessage(bytes.NewReader(m))
	if err != nil {
		return nil, err
	}
	return msg.Body, nil
}
