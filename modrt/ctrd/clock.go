package ctrd

import (
	"sync"
	"time"
)

// Clock is the time supervision reads and waits on: uptimes, exit times
// and restart back-off. RuntimeConfig.Clock injects one (tests drive
// back-off with a fake clock instead of sleeping through it).
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine after d, unless the returned
	// Timer is stopped first.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is the part of *time.Timer supervision uses.
type Timer interface{ Stop() bool }

// ctxTimer runs a function after a delay unless stopped or the runtime
// closes first; Close never waits out a back-off.
type ctxTimer struct {
	stop chan struct{}
	once sync.Once
}

func (t *ctxTimer) Stop() bool {
	t.once.Do(func() { close(t.stop) })
	return true
}

// newTimer is the real clock's AfterFunc, owned by the runtime (its
// goroutine ends when the runtime closes).
func (r *Runtime) newTimer(d time.Duration, f func()) Timer {
	t := &ctxTimer{stop: make(chan struct{})}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		tm := time.NewTimer(d)
		defer tm.Stop()
		select {
		case <-tm.C:
			f()
		case <-t.stop:
		case <-r.ctx.Done():
		}
	}()
	return t
}
