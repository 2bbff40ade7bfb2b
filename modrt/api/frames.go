package api

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// GetLogs returns Docker's multiplexed log framing: an 8-byte header
// (stream, three zero bytes, big-endian payload length), then the payload.
const (
	StreamStdout byte = 1
	StreamStderr byte = 2
)

// Frame is one frame of Docker's multiplexed log stream.
type Frame struct {
	Stream  byte // StreamStdout or StreamStderr
	Payload []byte
}

// ParseFrames splits a multiplexed stream (as GetLogs returns) into frames.
func ParseFrames(r io.Reader) ([]Frame, error) {
	var out []Frame
	var h [8]byte
	for {
		if _, err := io.ReadFull(r, h[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, fmt.Errorf("frame header: %w", err)
		}
		if h[0] != StreamStdout && h[0] != StreamStderr || h[1]|h[2]|h[3] != 0 {
			return out, fmt.Errorf("bad frame header % x", h)
		}
		p := make([]byte, binary.BigEndian.Uint32(h[4:]))
		if _, err := io.ReadFull(r, p); err != nil {
			return out, fmt.Errorf("frame payload: %w", err)
		}
		out = append(out, Frame{Stream: h[0], Payload: p})
	}
}

// FramedText reads a multiplexed stream and returns the payloads of both
// streams concatenated, in order.
func FramedText(r io.Reader) (string, error) {
	frames, err := ParseFrames(r)
	var b strings.Builder
	for _, f := range frames {
		b.Write(f.Payload)
	}
	return b.String(), err
}
