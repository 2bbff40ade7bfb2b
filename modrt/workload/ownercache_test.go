package workload

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// countingBackend owns the test's own pid when owns is set, and counts
// the ownership questions it is asked.
type countingBackend struct {
	fakeBackend
	owns  bool
	asked atomic.Int64
}

func (b *countingBackend) OwnsPid(_ context.Context, _ string, pid int32) bool {
	b.asked.Add(1)
	return b.owns && pid == int32(os.Getpid())
}

// A connection's process is asked about once: the verdict that it is the
// module's holds while the connection and the process live (the process
// is still checked alive on every request, TestConnectionOfAnExitedProcess
// IsNotTakenForItsReusedPid). A refusal is never kept: each request of a
// stranger is asked about again, and refused again.
func TestOwnershipIsAskedOncePerConnection(t *testing.T) {
	tests := []struct {
		name      string
		owns      bool
		conns     int // each makes 3 requests
		wantCode  int
		wantAsked int64
	}{
		{"the module's process, one connection", true, 1, 200, 1},
		{"the module's process, two connections", true, 2, 200, 2},
		{"a stranger", false, 2, 403, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			be := &countingBackend{owns: tt.owns}
			m := NewManager(dir, be, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err := m.Listen("sensor"); err != nil {
				t.Fatal(err)
			}
			defer m.Close("sensor")
			for i := 0; i < tt.conns; i++ {
				c, err := net.Dial("unix", filepath.Join(dir, "sensor", "workload.sock"))
				if err != nil {
					t.Fatal(err)
				}
				br := bufio.NewReader(c)
				for j := 0; j < 3; j++ {
					req, _ := http.NewRequest("GET", "http://workload/trust-bundle?api-version=2019-01-30", nil)
					if err := req.Write(c); err != nil {
						t.Fatal(err)
					}
					resp, err := http.ReadResponse(br, req)
					if err != nil {
						t.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != tt.wantCode {
						t.Fatalf("connection %d, request %d: %d, want %d", i, j, resp.StatusCode, tt.wantCode)
					}
				}
				c.Close()
			}
			if got := be.asked.Load(); got != tt.wantAsked {
				t.Errorf("ownership asked %d times, want %d", got, tt.wantAsked)
			}
		})
	}
}
