package modrt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/cio"
	"github.com/containerd/fifo"

	"github.com/edgev2/edgev2/internal/fault"
)

// Streams, numbered as in Docker's multiplexed framing.
const (
	StreamStdout byte = 1
	StreamStderr byte = 2
)

// LogOptions selects what Logs returns.
type LogOptions struct {
	Follow     bool      // keep streaming until the module stops or the reader is closed
	Tail       int       // last N lines only; -1 (or any negative) for all
	Since      time.Time // zero: no lower bound
	Until      time.Time // zero: no upper bound
	Timestamps bool      // prefix each payload with an RFC3339Nano timestamp and a space
}

// On disk, a module's output is a sequence of records, each one line (or
// a chunk of a very long line): a 16-byte header — stream, three zero
// bytes, payload length (uint32 big-endian), time (Unix nanoseconds,
// int64 big-endian) — and the payload. It keeps the bytes exactly as the
// module wrote them and maps onto Docker's framing without parsing.
const (
	recordHeader  = 16
	maxLineChunk  = 16 << 10 // Docker splits lines at 16 KiB too
	logFileName   = "log"
	followRecheck = 2 * time.Second // rotation check for followers even without a wake-up
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

// logFile is a module's size-capped, rotated log: files "log" (current),
// "log.1" ... "log.<files-1>" (oldest) in dir, each at most maxBytes.
type logFile struct {
	dir      string
	maxBytes int64
	files    int
	now      func() time.Time

	mu      sync.Mutex
	f       *os.File
	size    int64
	changed chan struct{} // closed and replaced on every append and wake
	closed  bool
}

func openLogFile(dir string, maxBytes int64, files int, now func() time.Time) (*logFile, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("make log dir: %w", err)
	}
	l := &logFile{dir: dir, maxBytes: maxBytes, files: files, now: now, changed: make(chan struct{})}
	f, err := os.OpenFile(l.path(0), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	// A kill -9 may have torn the last record; cut it off so appends
	// after it stay readable.
	var off int64
	for {
		_, n, ok := readRecordAt(f, off)
		if !ok {
			break
		}
		off += n
	}
	if err := f.Truncate(off); err != nil {
		f.Close()
		return nil, fmt.Errorf("truncate log: %w", err)
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("seek log: %w", err)
	}
	l.f, l.size = f, off
	return l, nil
}

func (l *logFile) path(i int) string {
	if i == 0 {
		return filepath.Join(l.dir, logFileName)
	}
	return filepath.Join(l.dir, logFileName+"."+strconv.Itoa(i))
}

// chunkLimit is the largest payload of one record, so one record always
// fits in one file.
func (l *logFile) chunkLimit() int {
	return int(min(int64(maxLineChunk), l.maxBytes-recordHeader))
}

func (l *logFile) append(stream byte, data []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return os.ErrClosed
	}
	rec := appendRecord(nil, record{stream: stream, at: l.now(), data: data})
	if l.size > 0 && l.size+int64(len(rec)) > l.maxBytes {
		if err := l.rotate(); err != nil {
			return err
		}
	}
	n, err := l.f.Write(rec)
	l.size += int64(n)
	l.wakeLocked()
	return err
}

// rotate shifts log.i to log.i+1, dropping the oldest, and starts a new
// current file.
func (l *logFile) rotate() error {
	l.f.Close()
	os.Remove(l.path(l.files - 1))
	for i := l.files - 2; i >= 0; i-- {
		if err := os.Rename(l.path(i), l.path(i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rotate log: %w", err)
		}
	}
	f, err := os.OpenFile(l.path(0), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		l.closed = true
		return fmt.Errorf("open new log: %w", err)
	}
	l.f, l.size = f, 0
	return nil
}

func (l *logFile) wakeLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// wake tells followers to look again (new data, or a state change).
func (l *logFile) wake() {
	l.mu.Lock()
	l.wakeLocked()
	l.mu.Unlock()
}

func (l *logFile) waitCh() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

func (l *logFile) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.closed = true
		l.f.Close()
		l.wakeLocked()
	}
}

// openAll opens every file, oldest first, under the lock so no rotation
// happens in between; the last one is the current file.
func (l *logFile) openAll() ([]*os.File, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var fs []*os.File
	for i := l.files - 1; i >= 0; i-- {
		f, err := os.Open(l.path(i))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			for _, f := range fs {
				f.Close()
			}
			return nil, err
		}
		fs = append(fs, f)
	}
	return fs, nil
}

// lineWriter cuts one stream into line records; a partial line waits for
// its end (or for the chunk limit, or for flush at end of stream).
type lineWriter struct {
	stream  byte
	log     *logFile
	partial []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
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
			if err := w.log.append(w.stream, w.partial[:cut]); err != nil {
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

func (w *lineWriter) flush() {
	if len(w.partial) > 0 {
		w.log.append(w.stream, w.partial)
		w.partial = nil
	}
}

// taskIO is a task's stdout and stderr as two FIFOs in a directory of
// ours that outlives this process: the shim holds the write ends (and a
// read end, so it never sees EPIPE), this process reads and logs. When
// modrtd goes away the FIFOs keep what the module writes (a pipe buffer's
// worth, then the module blocks) until the next modrtd attaches again.
type taskIO struct {
	config cio.Config
	cancel context.CancelFunc // aborts FIFO opens still pending
	done   chan struct{}      // closed when both copies ended

	mu      sync.Mutex
	fifos   []io.Closer
	removed bool
}

// newTaskIO makes fresh FIFOs in dir for a new task and reads them into log.
func newTaskIO(dir string, log *logFile) (*taskIO, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("make fifo dir: %w", err)
	}
	stdout, stderr := filepath.Join(dir, "stdout"), filepath.Join(dir, "stderr")
	for _, p := range []string{stdout, stderr} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove stale fifo: %w", err)
		}
	}
	return attachTaskIO(cio.Config{Stdout: stdout, Stderr: stderr}, log, true)
}

// attachTaskIO opens the FIFOs of cfg (creating them if create) and
// starts copying them into log.
func attachTaskIO(cfg cio.Config, log *logFile, create bool) (*taskIO, error) {
	ctx, cancel := context.WithCancel(context.Background())
	t := &taskIO{config: cio.Config{Stdout: cfg.Stdout, Stderr: cfg.Stderr}, cancel: cancel, done: make(chan struct{})}
	flags := syscall.O_RDONLY | syscall.O_NONBLOCK
	if create {
		flags |= syscall.O_CREAT
	}
	var wg sync.WaitGroup
	for _, s := range []struct {
		path   string
		stream byte
	}{{cfg.Stdout, StreamStdout}, {cfg.Stderr, StreamStderr}} {
		if s.path == "" {
			continue
		}
		f, err := fifo.OpenFifo(ctx, s.path, flags, 0o700)
		if err != nil {
			t.closeFifos()
			cancel()
			return nil, fmt.Errorf("open fifo %s: %w", s.path, err)
		}
		t.fifos = append(t.fifos, f)
		w := &lineWriter{stream: s.stream, log: log}
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 32<<10)
			io.CopyBuffer(w, f, buf)
			w.flush()
		}()
	}
	go func() { wg.Wait(); close(t.done) }()
	return t, nil
}

func (t *taskIO) Config() cio.Config { return t.config }
func (t *taskIO) Cancel()            { t.cancel() }

// Wait waits for the shim to close its ends (the task exited and its
// output is all logged); a writer that never closes is given up on after
// 10 s.
func (t *taskIO) Wait() {
	select {
	case <-t.done:
	case <-time.After(10 * time.Second):
		t.closeFifos()
		<-t.done
	}
}

// Close ends the copies and removes the FIFOs: the task is gone.
func (t *taskIO) Close() error {
	t.cancel()
	t.closeFifos()
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.removed {
		t.removed = true
		os.Remove(t.config.Stdout)
		os.Remove(t.config.Stderr)
	}
	return nil
}

// detach ends the copies but leaves the FIFOs for the next modrtd: the
// task keeps running.
func (t *taskIO) detach() {
	t.cancel()
	t.closeFifos()
	<-t.done
}

func (t *taskIO) closeFifos() {
	t.mu.Lock()
	fs := t.fifos
	t.fifos = nil
	t.mu.Unlock()
	for _, f := range fs {
		f.Close()
	}
}

// drainFifos logs what an exited task left in its FIFOs, without
// waiting for writers that are gone.
func drainFifos(cfg cio.Config, log *logFile) {
	for _, s := range []struct {
		path   string
		stream byte
	}{{cfg.Stdout, StreamStdout}, {cfg.Stderr, StreamStderr}} {
		if s.path == "" {
			continue
		}
		fd, err := syscall.Open(s.path, syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		w := &lineWriter{stream: s.stream, log: log}
		buf := make([]byte, 32<<10)
		for {
			n, err := syscall.Read(fd, buf)
			if n <= 0 || err != nil {
				break
			}
			w.Write(buf[:n])
		}
		w.flush()
		syscall.Close(fd)
	}
}

// logReader streams a module's records in Docker's multiplexed framing.
type logReader struct {
	log   *logFile
	opts  LogOptions
	ended func() bool // the module will write no more (stopped, failed, removed)
	now   func() time.Time
	stop  <-chan struct{}
	w     *io.PipeWriter
}

// Logs streams the logs of module name in Docker's multiplexed framing
// (see LogOptions). Closing the reader stops a follow.
func (r *Runtime) Logs(name string, opts LogOptions) (io.ReadCloser, error) {
	m, err := r.module(name)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	stop := make(chan struct{})
	lr := &logReader{log: m.logs, opts: opts, ended: func() bool { return r.followEnded(m) }, now: r.cfg.Now, stop: stop, w: pw}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, fault.New(fault.Unavailable, "the module runtime is shutting down")
	}
	r.wg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		pw.CloseWithError(lr.run(r.ctx))
	}()
	return &stopReader{PipeReader: pr, stop: stop}, nil
}

type stopReader struct {
	*io.PipeReader
	once sync.Once
	stop chan struct{}
}

func (s *stopReader) Close() error {
	s.once.Do(func() { close(s.stop) })
	return s.PipeReader.Close()
}

func (lr *logReader) run(ctx context.Context) error {
	files, err := lr.log.openAll()
	if err != nil {
		return fmt.Errorf("open logs: %w", err)
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	// The backlog: every file to its end, keeping the last Tail records.
	var ring []record
	var offset int64
	for i, f := range files {
		var off int64
		for {
			rec, n, ok := readRecordAt(f, off)
			if !ok {
				break
			}
			off += n
			if !lr.wanted(rec) {
				continue
			}
			if lr.opts.Tail < 0 {
				if err := lr.emit(rec); err != nil {
					return err
				}
				continue
			}
			if lr.opts.Tail == 0 {
				continue
			}
			if len(ring) == lr.opts.Tail {
				ring = append(ring[:0], ring[1:]...)
			}
			ring = append(ring, rec)
		}
		if i == len(files)-1 {
			offset = off
		}
	}
	for _, rec := range ring {
		if err := lr.emit(rec); err != nil {
			return err
		}
	}
	if !lr.opts.Follow || len(files) == 0 {
		return nil
	}
	return lr.follow(ctx, files[len(files)-1], offset)
}

// follow tails the current file like tail -F: it reads the open file to
// its end, and when the log rotated under it finishes that file and
// moves to the new current one.
func (lr *logReader) follow(ctx context.Context, cur *os.File, off int64) error {
	own := false
	defer func() {
		if own {
			cur.Close()
		}
	}()
	drain := func() error {
		for {
			rec, n, ok := readRecordAt(cur, off)
			if !ok {
				return nil
			}
			off += n
			if lr.wanted(rec) {
				if err := lr.emit(rec); err != nil {
					return err
				}
			}
		}
	}
	for {
		ch := lr.log.waitCh()
		ended := lr.ended()
		if err := drain(); err != nil {
			return err
		}
		if rotated(cur, lr.log.path(0)) {
			if err := drain(); err != nil {
				return err
			}
			next, err := os.Open(lr.log.path(0))
			if err == nil {
				if own {
					cur.Close()
				}
				cur, off, own = next, 0, true
				continue
			}
		}
		if ended || (!lr.opts.Until.IsZero() && lr.now().After(lr.opts.Until)) {
			return nil
		}
		select {
		case <-ch:
		case <-time.After(followRecheck):
		case <-lr.stop:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

func rotated(cur *os.File, path string) bool {
	a, err := cur.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	if err != nil {
		return false
	}
	return !os.SameFile(a, b)
}

func (lr *logReader) wanted(rec record) bool {
	if !lr.opts.Since.IsZero() && rec.at.Before(lr.opts.Since) {
		return false
	}
	if !lr.opts.Until.IsZero() && rec.at.After(lr.opts.Until) {
		return false
	}
	return true
}

func (lr *logReader) emit(rec record) error {
	payload := rec.data
	if lr.opts.Timestamps {
		payload = append([]byte(rec.at.UTC().Format(time.RFC3339Nano)+" "), rec.data...)
	}
	frame := make([]byte, 8, 8+len(payload))
	frame[0] = rec.stream
	binary.BigEndian.PutUint32(frame[4:], uint32(len(payload)))
	_, err := lr.w.Write(append(frame, payload...))
	return err
}

// Frame is one frame of Docker's multiplexed log stream.
type Frame struct {
	Stream  byte // StreamStdout or StreamStderr
	Payload []byte
}

// ParseFrames splits a multiplexed stream (as Logs returns) into frames.
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
