// The D-Bus peer protocol of a Keys session, spoken without godbus on the
// hot path: the SASL handshake, reading a message within the size limit,
// and encoding replies without reflection.

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

	godbus "github.com/godbus/dbus/v5"
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
	var order binary.ByteOrder
	switch fixed[0] {
	case 'l':
		order = binary.LittleEndian
	case 'B':
		order = binary.BigEndian
	default:
		return fixedHeader{}, nil, errors.New("invalid byte order")
	}
	h := fixedHeader{typ: fixed[1], flags: fixed[2], serial: order.Uint32(fixed[8:12])}
	bodyLen := uint64(order.Uint32(fixed[4:8]))
	fieldsLen := uint64(order.Uint32(fixed[12:16]))
	total := 16 + (fieldsLen+7)&^7 + bodyLen
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
