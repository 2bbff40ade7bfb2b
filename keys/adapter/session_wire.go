// The D-Bus peer protocol of a Keys session, spoken without godbus on the
// hot path: the SASL handshake, reading a message within the size limit,
// reading the hot calls (Sign, Verify, SignDerived) and encoding replies,
// all without reflection.

package adapter

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	godbus "github.com/godbus/dbus/v5"

	"github.com/edgev2/edgev2/keys/api"
)

// handshake is the server side of the D-Bus SASL exchange: EXTERNAL is
// accepted whatever identity it claims, since the socket, not the peer's
// uid, carries the authority; unix fds are not passed on a session.
func (s *session) handshake(r *bufio.Reader) error {
	nul, err := r.ReadByte()
	if err != nil {
		return err
	}
	if nul != 0 {
		return errors.New("no leading NUL byte")
	}
	var guid [16]byte
	rand.Read(guid[:])
	for range 16 {
		line, err := readAuthLine(r)
		if err != nil {
			return err
		}
		var reply string
		switch cmd, arg, _ := bytes.Cut(line, []byte(" ")); string(cmd) {
		case "AUTH":
			mech, _, _ := bytes.Cut(arg, []byte(" "))
			if string(mech) == "EXTERNAL" {
				reply = "OK " + hex.EncodeToString(guid[:])
			} else {
				reply = "REJECTED EXTERNAL"
			}
		case "NEGOTIATE_UNIX_FD":
			reply = "ERROR file descriptors are not passed on a Keys session"
		case "BEGIN":
			return nil
		case "CANCEL", "ERROR", "DATA":
			reply = "REJECTED EXTERNAL"
		default:
			reply = "ERROR unknown command"
		}
		if _, err := s.conn.Write([]byte(reply + "\r\n")); err != nil {
			return err
		}
	}
	return errors.New("too many authentication commands")
}

func readAuthLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		b, err := r.ReadByte()
		if err != nil {
			return nil, err
		}
		if b == '\n' {
			return bytes.TrimSuffix(line, []byte("\r")), nil
		}
		if len(line) >= 1024 {
			return nil, errors.New("authentication line too long")
		}
		line = append(line, b)
	}
}

type fixedHeader struct {
	typ, flags byte
	serial     uint32
}

type messageTooLarge struct {
	serial uint32
	size   uint64
}

func (e *messageTooLarge) Error() string {
	return fmt.Sprintf("message is %d bytes; a Keys session takes at most %d", e.size, maxSessionMessage)
}

// readMessage reads one whole message after checking its size from the
// fixed header, so a peer cannot make keyd allocate more than
// maxSessionMessage for it.
func readMessage(r *bufio.Reader) (fixedHeader, []byte, error) {
	var fixed [16]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return fixedHeader{}, nil, err
	}
	f, err := api.ParseFrame(fixed[:])
	if err != nil {
		return fixedHeader{}, nil, err
	}
	h, total := fixedHeader{typ: f.Type, flags: f.Flags, serial: f.Serial}, f.Length
	if total > maxSessionMessage {
		return h, nil, &messageTooLarge{serial: h.serial, size: total}
	}
	buf := make([]byte, total)
	copy(buf, fixed[:])
	if _, err := io.ReadFull(r, buf[16:]); err != nil {
		return h, nil, err
	}
	return h, buf, nil
}

// encodeMessage writes a method reply (errName "") or an error reply in the
// D-Bus wire format (little endian) without reflection: a reply body is
// []byte (ay), bool (b) or nil; an error body is its message (s).
func encodeMessage(serial, replySerial uint32, errName string, body any) []byte {
	b := make([]byte, 0, 128)
	typ := byte(godbus.TypeMethodReply)
	var sig string
	switch v := body.(type) {
	case []byte:
		sig = "ay"
	case bool:
		sig = "b"
	case string:
		sig = "s"
	case nil:
	default:
		panic(fmt.Sprintf("session reply of type %T", v))
	}
	if errName != "" {
		typ = byte(godbus.TypeError)
	}
	b = append(b, 'l', typ, 0, 1, 0, 0, 0, 0) // body length patched below
	b = binary.LittleEndian.AppendUint32(b, serial)
	b = append(b, 0, 0, 0, 0) // header fields length patched below
	start := len(b)
	// REPLY_SERIAL (5): u
	b = append(b, 5, 1, 'u', 0)
	b = binary.LittleEndian.AppendUint32(b, replySerial)
	if errName != "" {
		// ERROR_NAME (4): s
		b = pad8(b)
		b = append(b, 4, 1, 's', 0)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(errName)))
		b = append(b, errName...)
		b = append(b, 0)
	}
	if sig != "" {
		// SIGNATURE (8): g
		b = pad8(b)
		b = append(b, 8, 1, 'g', 0, byte(len(sig)))
		b = append(b, sig...)
		b = append(b, 0)
	}
	binary.LittleEndian.PutUint32(b[12:], uint32(len(b)-start))
	b = pad8(b)
	bodyStart := len(b)
	switch v := body.(type) {
	case []byte:
		b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	case bool:
		var x uint32
		if v {
			x = 1
		}
		b = binary.LittleEndian.AppendUint32(b, x)
	case string:
		b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
		b = append(b, 0)
	}
	binary.LittleEndian.PutUint32(b[4:], uint32(len(b)-bodyStart))
	return b
}

func pad8(b []byte) []byte {
	for len(b)%8 != 0 {
		b = append(b, 0)
	}
	return b
}

// sessionCall is one method call read from a session.
type sessionCall struct {
	serial  uint32
	noReply bool
	iface   string
	member  string
	path    godbus.ObjectPath
	sig     string
	body    []any
}

func callOfMessage(msg *godbus.Message) sessionCall {
	c := sessionCall{serial: msg.Serial(), noReply: msg.Flags&godbus.FlagNoReplyExpected != 0, body: msg.Body}
	c.iface, _ = msg.Headers[godbus.FieldInterface].Value().(string)
	c.member, _ = msg.Headers[godbus.FieldMember].Value().(string)
	c.path, _ = msg.Headers[godbus.FieldPath].Value().(godbus.ObjectPath)
	sig, _ := msg.Headers[godbus.FieldSignature].Value().(godbus.Signature)
	c.sig = sig.String()
	return c
}

// leanSignatures are the hot calls parseCall reads: Sign, Verify and
// SignDerived, with their signatures (an a{sv} only when empty).
var leanSignatures = map[string]string{
	api.MethodSign:        "saya{sv}",
	api.MethodVerify:      "sayaya{sv}",
	api.MethodSignDerived: "aysay",
}

// emptyOptions is the a{sv} of a lean call: empty, shared, never written.
var emptyOptions = map[string]godbus.Variant(nil)

// parseCall reads a whole message (as readMessage returns it) without
// reflection when it is one of the hot calls in its plainest form: a method
// call to a Key method of leanSignatures, with only the path, interface,
// member and signature header fields, valid UTF-8 strings and no options.
// ok is false for anything else, which godbus decodes as before: parseCall
// takes only messages godbus would decode to the same call (the fuzz test
// checks that), so which decoder ran never shows in the answer. The body's
// byte arrays alias m.
func parseCall(m []byte) (c sessionCall, ok bool) {
	if len(m) < 16 || m[1] != byte(godbus.TypeMethodCall) || m[3] != 1 {
		return c, false
	}
	order := api.ByteOrder(m[0])
	if order == nil {
		return c, false
	}
	const knownFlags = byte(godbus.FlagNoReplyExpected | godbus.FlagNoAutoStart | godbus.FlagAllowInteractiveAuthorization)
	if m[2]&^knownFlags != 0 {
		return c, false
	}
	c.noReply = m[2]&byte(godbus.FlagNoReplyExpected) != 0
	c.serial = order.Uint32(m[8:12])
	bodyLen := uint64(order.Uint32(m[4:8]))
	fieldsEnd := 16 + uint64(order.Uint32(m[12:16]))
	bodyStart := (fieldsEnd + 7) &^ 7
	if bodyStart+bodyLen != uint64(len(m)) {
		return c, false
	}
	var seen [9]bool
	p := uint64(16)
	for p < fieldsEnd {
		p = (p + 7) &^ 7
		if p+4 > fieldsEnd {
			return c, false
		}
		code, sigLen, typ, nul := m[p], m[p+1], m[p+2], m[p+3]
		if sigLen != 1 || nul != 0 || code >= byte(len(seen)) || seen[code] {
			return c, false
		}
		seen[code] = true
		p += 4
		var s string
		switch {
		case (code == 1 && typ == 'o') || ((code == 2 || code == 3) && typ == 's'):
			var ok bool
			if s, p, ok = leanString(m[:fieldsEnd], p, order); !ok {
				return c, false
			}
		case code == 8 && typ == 'g':
			n := uint64(m[p])
			if p+1+n+1 > fieldsEnd || m[p+1+n] != 0 {
				return c, false
			}
			s = string(m[p+1 : p+1+n])
			p += 1 + n + 1
		default:
			return c, false
		}
		switch code {
		case 1:
			c.path = godbus.ObjectPath(s)
		case 2:
			c.iface = s
		case 3:
			c.member = s
		case 8:
			c.sig = s
		}
	}
	if p != fieldsEnd || !c.path.IsValid() || (c.iface != "" && c.iface != api.KeyInterface) {
		return c, false
	}
	if sig, lean := leanSignatures[c.member]; !lean || c.sig != sig {
		return c, false
	}
	// The body, by signature: s, ay and an empty a{sv}, all aligned to
	// the message's start (the body starts 8-aligned).
	p = bodyStart
	c.body = make([]any, 0, 4)
	for i := 0; i < len(c.sig); {
		switch {
		case c.sig[i] == 's':
			s, q, ok := leanString(m, p, order)
			if !ok {
				return c, false
			}
			c.body, p = append(c.body, s), q
			i++
		case strings.HasPrefix(c.sig[i:], "ay"):
			p = (p + 3) &^ 3
			if p+4 > uint64(len(m)) {
				return c, false
			}
			n := uint64(order.Uint32(m[p:]))
			if p+4+n > uint64(len(m)) {
				return c, false
			}
			c.body = append(c.body, m[p+4:p+4+n:p+4+n])
			p += 4 + n
			i += 2
		case strings.HasPrefix(c.sig[i:], "a{sv}"):
			p = (p + 3) &^ 3
			if p+4 > uint64(len(m)) || order.Uint32(m[p:]) != 0 {
				return c, false
			}
			p = (p + 4 + 7) &^ 7
			c.body = append(c.body, emptyOptions)
			i += 5
		default:
			return c, false
		}
	}
	if p != uint64(len(m)) {
		return c, false
	}
	return c, true
}

// leanString reads a D-Bus string at p (aligned up to 4): valid UTF-8 with
// no NUL inside and its terminating NUL.
func leanString(m []byte, p uint64, order binary.ByteOrder) (string, uint64, bool) {
	p = (p + 3) &^ 3
	if p+4 > uint64(len(m)) {
		return "", p, false
	}
	n := uint64(order.Uint32(m[p:]))
	if p+4+n+1 > uint64(len(m)) || m[p+4+n] != 0 {
		return "", p, false
	}
	b := m[p+4 : p+4+n]
	if !utf8.Valid(b) || bytes.IndexByte(b, 0) >= 0 {
		return "", p, false
	}
	return string(b), p + 4 + n + 1, true
}
