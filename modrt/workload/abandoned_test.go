package workload

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/edgev2/edgev2/internal/testenv"
)

// busBackend answers like a D-Bus service behind modrtd's one bus
// connection: a call, once made, runs in the service until it is
// released, whether or not the caller still waits (godbus returns on the
// caller's context; D-Bus cannot cancel a call, and dbus-daemon counts it
// against modrtd's max_replies_per_connection until the service answers).
type busBackend struct {
	fakeBackend
	started chan struct{}
	release chan struct{}

	mu      sync.Mutex
	pending int // calls made and not yet answered by the service
}

func (b *busBackend) OwnsPid(_ context.Context, _ string, pid int32) bool {
	return pid == int32(os.Getpid())
}

func (b *busBackend) TrustBundle(ctx context.Context) (string, error) {
	b.mu.Lock()
	b.pending++
	b.mu.Unlock()
	answered := make(chan struct{})
	go func() { // the service's side of the call
		<-b.release
		b.mu.Lock()
		b.pending--
		b.mu.Unlock()
		close(answered)
	}()
	b.started <- struct{}{}
	select {
	case <-answered:
		return "TRUST", nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func (b *busBackend) pendingCalls() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.pending
}

// red team s14: a module that sends a request and hangs up as soon as
// modrtd has made the backend call frees its connection slot at once (the
// request's context is cancelled, the handler returns), while the call it
// caused still runs in keyd, certd or identityd and is still counted
// against modrtd's bus connection. Connection after connection, one module
// piles up calls without bound: past dbus-daemon's 128 pending replies per
// connection every call modrtd makes fails (LimitsExceeded), every other
// module's workload requests and the management API with them; a keyd
// queue of 1 MiB encrypt calls outgrows its MemoryMax. A request holds its
// slot until the backend has answered it, and a module has at most
// MaxCalls requests served at once, so it has a bounded number of backend
// calls in flight whatever it does with its connections.
func TestAModulesAbandonedRequestsHoldABoundedNumberOfBackendCalls(t *testing.T) {
	const attempts = 300 // well over modrtd's 128 pending bus replies
	dir := t.TempDir()
	be := &busBackend{started: make(chan struct{}, attempts), release: make(chan struct{})}
	m := NewManager(dir, be, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := m.Listen("sensor"); err != nil {
		t.Fatal(err)
	}
	defer m.Close("sensor")
	released := false
	releaseAll := func() {
		if !released {
			released = true
			close(be.release)
		}
	}
	defer releaseAll()
	sock := filepath.Join(dir, "sensor", "workload.sock")
	req := []byte("GET /trust-bundle?api-version=2019-01-30 HTTP/1.1\r\nHost: workload\r\n\r\n")

	made := 0
	for range attempts {
		c, err := net.Dial("unix", sock)
		if err != nil {
			break
		}
		if _, err := c.Write(req); err != nil {
			c.Close()
			break
		}
		// Hang up once the call is made. A server that makes no more
		// calls for this module ends the flood (the wait only paces it).
		select {
		case <-be.started:
			made++
			c.Close()
			continue
		case <-time.After(2 * time.Second):
		}
		c.Close()
		break
	}
	pending := be.pendingCalls()
	t.Logf("module made %d backend calls by hanging up; %d still pending in the services", made, pending)
	if pending > MaxCalls {
		t.Fatalf("one module left %d backend calls pending by hanging up, want at most %d (MaxCalls)", pending, MaxCalls)
	}

	// Legitimate use: once the services answer, the module is served.
	releaseAll()
	testenv.Eventually(t, 10*time.Second, func() bool {
		c, err := net.Dial("unix", sock)
		if err != nil {
			return false
		}
		defer c.Close()
		return testenv.Ask(c, "http://workload/trust-bundle?api-version=2019-01-30")
	}, "the module's request is served once its earlier calls were answered")
}
