package modrt

import (
	"io"

	"github.com/edgev2/edgev2/modrt/logstore"
)

// Streams, numbered as in Docker's multiplexed framing.
const (
	StreamStdout = logstore.StreamStdout
	StreamStderr = logstore.StreamStderr
)

// LogOptions selects what Logs returns.
type LogOptions = logstore.Options

// Frame is one frame of Docker's multiplexed log stream.
type Frame = logstore.Frame

// ParseFrames splits a multiplexed stream (as Logs returns) into frames.
func ParseFrames(r io.Reader) ([]Frame, error) { return logstore.ParseFrames(r) }

// FramedText reads a multiplexed stream and returns the payloads of both
// streams concatenated, in order.
func FramedText(r io.Reader) (string, error) { return logstore.FramedText(r) }
