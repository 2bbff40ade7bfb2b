package logstore

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"
)

// followRecheck: followers look for a rotation this often even without a
// wake-up.
const followRecheck = 2 * time.Second

// Options selects what Copy writes.
type Options struct {
	Follow     bool      // keep streaming until the module stops or the reader is closed
	Tail       int       // last N lines only; -1 (or any negative) for all
	Since      time.Time // zero: no lower bound
	Until      time.Time // zero: no upper bound
	Timestamps bool      // prefix each payload with an RFC3339Nano timestamp and a space
}

// Follow is what ends a follow (Options.Follow): Ended reports that the
// module will write no more (stopped, failed, removed), Now is checked
// against Options.Until, and Stop is closed when the reader goes away.
type Follow struct {
	Ended func() bool
	Now   func() time.Time
	Stop  <-chan struct{}
}

// Copy writes the records of l that opts selects to w in Docker's
// multiplexed framing; with opts.Follow it then follows l (see Follow)
// until ctx ends.
func (l *Log) Copy(ctx context.Context, w io.Writer, opts Options, f Follow) error {
	lr := &reader{log: l, opts: opts, follow: f, w: w}
	return lr.run(ctx)
}

type reader struct {
	log    *Log
	opts   Options
	follow Follow
	w      io.Writer
}

func (lr *reader) run(ctx context.Context) error {
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
	return lr.tail(ctx, files[len(files)-1], offset)
}

// tail follows the current file like tail -F: it reads the open file to
// its end, and when the log rotated under it finishes that file and
// moves to the new current one.
func (lr *reader) tail(ctx context.Context, cur *os.File, off int64) error {
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
		ended := lr.follow.Ended()
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
		if ended || (!lr.opts.Until.IsZero() && lr.follow.Now().After(lr.opts.Until)) {
			return nil
		}
		select {
		case <-ch:
		case <-time.After(followRecheck):
		case <-lr.follow.Stop:
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

func (lr *reader) wanted(rec record) bool {
	if !lr.opts.Since.IsZero() && rec.at.Before(lr.opts.Since) {
		return false
	}
	if !lr.opts.Until.IsZero() && rec.at.After(lr.opts.Until) {
		return false
	}
	return true
}

func (lr *reader) emit(rec record) error {
	payload := rec.data
	if lr.opts.Timestamps {
		payload = append([]byte(rec.at.UTC().Format(time.RFC3339Nano)+" "), rec.data...)
	}
	_, err := lr.w.Write(appendFrame(make([]byte, 0, 8+len(payload)), rec.stream, payload))
	return err
}
