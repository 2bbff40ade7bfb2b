// Package logstore keeps a module's output on disk — line records in
// size-capped, rotated files — and reads it back in Docker's multiplexed
// framing (tail, since/until, timestamps, follow).
package logstore

import (
	"encoding/binary"
	"io"
	"time"
)

// Streams, numbered as in Docker's multiplexed framing.
const (
	StreamStdout byte = 1
	StreamStderr byte = 2
)

// On disk, a module's output is a sequence of records, each one line (or
// a chunk of a very long line): a 16-byte header — stream, three zero
// bytes, payload length (uint32 big-endian), time (Unix nanoseconds,
// int64 big-endian) — and the payload. It keeps the bytes exactly as the
// module wrote them and maps onto Docker's framing without parsing.
const (
	recordHeader = 16
	maxLineChunk = 16 << 10 // Docker splits lines at 16 KiB too
)

type record struct {
	stream byte
	at     time.Time
	data   []byte
}

func appendRecord(b []byte, r record) []byte {
	var h [recordHeader]byte
	h[0] = r.stream
	binary.BigEndian.PutUint32(h[4:8], uint32(len(r.data)))
	binary.BigEndian.PutUint64(h[8:16], uint64(r.at.UnixNano()))
	return append(append(b, h[:]...), r.data...)
}

// readRecordAt reads the record at off; ok is false when there is no
// whole, well-formed record there (end of file, or one being written or torn).
func readRecordAt(f io.ReaderAt, off int64) (r record, size int64, ok bool) {
	var h [recordHeader]byte
	if n, _ := f.ReadAt(h[:], off); n < recordHeader {
		return record{}, 0, false
	}
	n := binary.BigEndian.Uint32(h[4:8])
	if (h[0] != StreamStdout && h[0] != StreamStderr) || h[1]|h[2]|h[3] != 0 || n > maxLineChunk {
		return record{}, 0, false
	}
	data := make([]byte, n)
	if got, _ := f.ReadAt(data, off+recordHeader); got < int(n) {
		return record{}, 0, false
	}
	at := time.Unix(0, int64(binary.BigEndian.Uint64(h[8:16])))
	return record{stream: h[0], at: at, data: data}, recordHeader + int64(n), true
}
