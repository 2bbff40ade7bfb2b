package ctrd

import (
	"io"
	"sync"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/modrt/logstore"
)

// Logs streams the logs of module name in Docker's multiplexed framing
// (see logstore.Options). Closing the reader stops a follow.
func (r *Runtime) Logs(name string, opts logstore.Options) (io.ReadCloser, error) {
	m, err := r.module(name)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	stop := make(chan struct{})
	follow := logstore.Follow{Ended: func() bool { return r.followEnded(m) }, Now: r.cfg.Now, Stop: stop}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, fault.New(fault.Unavailable, "the module runtime is shutting down")
	}
	r.wg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		pw.CloseWithError(m.logs.Copy(r.ctx, pw, opts, follow))
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
