package adapter

import "context"

// workerPool runs calls on long-lived goroutines. A goroutine made per call
// (godbus's way) starts with a small stack and grows it by copying on every
// call that goes deep (polkit, PKCS#11, encoding): about a tenth of keyd's
// CPU under load. Idle workers keep their grown stacks; when none is idle a
// call gets a goroutine of its own, so the caller (the bus read loop, a
// session's reader) never waits here.
type workerPool struct {
	ch chan func()
}

// poolWorkers is enough to keep a token busy on two cores; bursts beyond
// it spill over to new goroutines.
const poolWorkers = 8

func newWorkerPool(ctx context.Context, n int) *workerPool {
	p := &workerPool{ch: make(chan func())}
	for range n {
		go p.work(ctx)
	}
	return p
}

func (p *workerPool) run(f func()) {
	select {
	case p.ch <- f: // an idle worker took it
	default:
		go f()
	}
}

func (p *workerPool) work(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case f := <-p.ch:
			f()
		}
	}
}
