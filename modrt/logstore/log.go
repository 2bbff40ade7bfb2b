package logstore

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

const fileName = "log"

// Log is a module's size-capped, rotated log: files "log" (current),
// "log.1" ... "log.<files-1>" (oldest) in dir, each at most maxBytes.
type Log struct {
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

// Open opens (creating it) the log in dir; now stamps the records.
func Open(dir string, maxBytes int64, files int, now func() time.Time) (*Log, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("make log dir: %w", err)
	}
	l := &Log{dir: dir, maxBytes: maxBytes, files: files, now: now, changed: make(chan struct{})}
	l.pruneBeyond()
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

func (l *Log) path(i int) string {
	if i == 0 {
		return filepath.Join(l.dir, fileName)
	}
	return filepath.Join(l.dir, fileName+"."+strconv.Itoa(i))
}

// chunkLimit is the largest payload of one record, so one record always
// fits in one file.
func (l *Log) chunkLimit() int {
	return int(min(int64(maxLineChunk), l.maxBytes-recordHeader))
}

// Append writes one record of stream, rotating first when it would not fit.
func (l *Log) Append(stream byte, data []byte) error {
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
func (l *Log) rotate() error {
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

func (l *Log) wakeLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// Wake tells followers to look again (new data, or a state change).
func (l *Log) Wake() {
	l.mu.Lock()
	l.wakeLocked()
	l.mu.Unlock()
}

func (l *Log) waitCh() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

// Close closes the current file and wakes the followers; later appends fail.
func (l *Log) Close() {
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
func (l *Log) openAll() ([]*os.File, error) {
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

// DiskUsage is what the log in dir holds on disk: its bytes and its files.
// A log opened with maxBytes and files never holds more than maxBytes×files
// bytes in files files.
func DiskUsage(dir string) (bytes int64, files int, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, fmt.Errorf("read log dir: %w", err)
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			return 0, 0, fmt.Errorf("log dir: %w", err)
		}
		bytes += fi.Size()
		files++
	}
	return bytes, files, nil
}

// pruneBeyond removes the rotated files past l.files, which a log opened
// with more files before (a limit lowered since) left.
func (l *Log) pruneBeyond() {
	ents, _ := os.ReadDir(l.dir)
	for _, e := range ents {
		if n, ok := strings.CutPrefix(e.Name(), fileName+"."); ok {
			if i, err := strconv.Atoi(n); err == nil && i >= l.files && n == strconv.Itoa(i) {
				os.Remove(filepath.Join(l.dir, e.Name()))
			}
		}
	}
}
