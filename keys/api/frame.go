package api

import (
	"encoding/binary"
	"errors"
)

// Frame is what the 16-byte fixed header that starts every D-Bus message
// says (the wire format a Keys session speaks): its byte order, type,
// flags, serial and the length of the whole message, padding included.
// Both ends of a session read it before they read the rest.
type Frame struct {
	Order  binary.ByteOrder
	Type   byte
	Flags  byte
	Serial uint32
	Length uint64 // 16 + header fields padded to 8 + body
}

// ErrByteOrder is a message whose first byte is neither 'l' nor 'B'.
var ErrByteOrder = errors.New("invalid byte order")

// ByteOrder is the byte order a message's first byte names, nil if it
// names none.
func ByteOrder(b byte) binary.ByteOrder {
	switch b {
	case 'l':
		return binary.LittleEndian
	case 'B':
		return binary.BigEndian
	}
	return nil
}

// ErrShortFrame is fewer than the 16 bytes of a fixed header.
var ErrShortFrame = errors.New("shorter than a message's 16-byte fixed header")

// ParseFrame reads the fixed header at the start of b. The length is
// computed in 64 bits (it cannot wrap: at most 16 + 2^32 + 2^32); a caller
// bounds it before it allocates.
func ParseFrame(b []byte) (Frame, error) {
	if len(b) < 16 {
		return Frame{}, ErrShortFrame
	}
	order := ByteOrder(b[0])
	if order == nil {
		return Frame{}, ErrByteOrder
	}
	return Frame{Order: order, Type: b[1], Flags: b[2], Serial: order.Uint32(b[8:12]),
		Length: 16 + (uint64(order.Uint32(b[12:16]))+7)&^7 + uint64(order.Uint32(b[4:8]))}, nil
}
