package ctrd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/cio"
	"github.com/containerd/fifo"

	"github.com/edgev2/edgev2/modrt/logstore"
)

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
func newTaskIO(dir string, log *logstore.Log) (*taskIO, error) {
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
func attachTaskIO(cfg cio.Config, log *logstore.Log, create bool) (*taskIO, error) {
	ctx, cancel := context.WithCancel(context.Background())
	t := &taskIO{config: cio.Config{Stdout: cfg.Stdout, Stderr: cfg.Stderr}, cancel: cancel, done: make(chan struct{})}
	flags := syscall.O_RDONLY | syscall.O_NONBLOCK
	if create {
		flags |= syscall.O_CREAT
	}
	var wg sync.WaitGroup
	for _, s := range outputFifos(cfg) {
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
		w := logstore.NewLineWriter(s.stream, log)
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 32<<10)
			io.CopyBuffer(w, f, buf)
			w.Flush()
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

// outputFifo is a task's stdout or stderr FIFO ("" when it has none) and
// the stream its lines are logged as.
type outputFifo struct {
	path   string
	stream byte
}

func outputFifos(cfg cio.Config) []outputFifo {
	return []outputFifo{{cfg.Stdout, logstore.StreamStdout}, {cfg.Stderr, logstore.StreamStderr}}
}

// drainFifos logs what an exited task left in its FIFOs, without
// waiting for writers that are gone.
func drainFifos(cfg cio.Config, log *logstore.Log) {
	for _, s := range outputFifos(cfg) {
		if s.path == "" {
			continue
		}
		fd, err := syscall.Open(s.path, syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		w := logstore.NewLineWriter(s.stream, log)
		buf := make([]byte, 32<<10)
		for {
			n, err := syscall.Read(fd, buf)
			if n <= 0 || err != nil {
				break
			}
			w.Write(buf[:n])
		}
		w.Flush()
		syscall.Close(fd)
	}
}
