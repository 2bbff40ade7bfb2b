package logstore

import "bytes"

// LineWriter cuts one stream into line records; a partial line waits for
// its end (or for the chunk limit, or for Flush at end of stream).
type LineWriter struct {
	stream  byte
	log     *Log
	partial []byte
}

// NewLineWriter writes stream's lines to l.
func NewLineWriter(stream byte, l *Log) *LineWriter { return &LineWriter{stream: stream, log: l} }

// Write never fails: a log that cannot be written must not block the module.
func (w *LineWriter) Write(p []byte) (int, error) {
	n := len(p)
	limit := w.log.chunkLimit()
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.partial = append(w.partial, p...)
			p = nil
		} else {
			w.partial = append(w.partial, p[:i+1]...)
			p = p[i+1:]
		}
		for len(w.partial) >= limit || (len(w.partial) > 0 && w.partial[len(w.partial)-1] == '\n') {
			cut := min(len(w.partial), limit)
			if err := w.log.Append(w.stream, w.partial[:cut]); err != nil {
				return n, nil // a log that cannot be written must not block the module
			}
			w.partial = w.partial[cut:]
		}
	}
	if cap(w.partial) > 4*limit && len(w.partial) == 0 {
		w.partial = nil
	}
	return n, nil
}

// Flush logs a partial last line (the stream ended).
func (w *LineWriter) Flush() {
	if len(w.partial) > 0 {
		w.log.Append(w.stream, w.partial)
		w.partial = nil
	}
}
