package workload

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
)

// levelCounter counts the records logged at each level.
type levelCounter struct{ warn, debug atomic.Int64 }

func (c *levelCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c *levelCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		c.warn.Add(1)
	} else {
		c.debug.Add(1)
	}
	return nil
}
func (c *levelCounter) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *levelCounter) WithGroup(string) slog.Handler      { return c }

// red team s14: every request a service refused (a ciphertext that does
// not authenticate, a generation id not the module's, a certificate name
// not granted) was a warning in modrtd's log, so a module could write
// modrtd's journal as fast as it sent requests: journald's per-service
// rate limit (10,000 lines in 30 s by default) then suppresses modrtd's
// own lines, other modules' included. Refusals are debug lines, as the
// D-Bus adapters log them (bus.Adapter.Fail); a service that fails is
// still a warning.
func TestAModulesRefusedRequestsAreNotWarnings(t *testing.T) {
	const refused = 200
	c := &levelCounter{}
	h := NewManager(t.TempDir(), fakeBackend{}, slog.New(c)).handler("sensor")
	reqs := []struct{ target, body string }{
		{"/modules/sensor/genid/g/decrypt?api-version=2020-07-07", `{"ciphertext":"` + b64("not sensor's") + `","initializationVector":"` + b64("iv") + `"}`},
		{"/modules/sensor/genid/not-mine/encrypt?api-version=2020-07-07", `{"plaintext":"` + b64("x") + `","initializationVector":"` + b64("iv") + `"}`},
		{"/modules/sensor/genid/g/certificate/server?api-version=2020-07-07", `{"commonName":"held","expiration":"2099-01-01T00:00:00Z"}`},
	}
	for i := range refused {
		r := reqs[i%len(reqs)]
		if w := serve(h, 100, "POST", r.target, r.body); w.Code < 400 || w.Code >= 500 {
			t.Fatalf("%s: %d, want a refusal (4xx)", r.target, w.Code)
		}
	}
	if n := c.warn.Load(); n != 0 {
		t.Fatalf("%d refused requests of the module logged %d warnings in modrtd's log, want none (debug lines)", refused, n)
	}
	// A service that fails is still a warning.
	w := serve(h, 100, "POST", "/modules/sensor/genid/g/certificate/server?api-version=2020-07-07", `{"commonName":"sensor","expiration":"2099-01-01T00:00:00Z"}`)
	if w.Code != 503 || c.warn.Load() != 1 {
		t.Fatalf("a failing service: %d and %d warnings, want 503 and 1", w.Code, c.warn.Load())
	}
}
