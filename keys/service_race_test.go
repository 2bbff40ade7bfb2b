package keys

import (
	"context"
	"sync"
	"testing"

	"github.com/edgev2/edgev2/fault"
)

// gate pauses the first call that passes it: entered is closed when that
// call arrives, which then waits until release is closed.
type gate struct {
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func newGate() gate { return gate{entered: make(chan struct{}), release: make(chan struct{})} }

func (g *gate) pass() {
	g.once.Do(func() {
		close(g.entered)
		<-g.release
	})
}

// deleteWhilePaused runs call, which g pauses, deletes key "k" from s
// meanwhile, then lets call finish and waits for it.
func deleteWhilePaused(t *testing.T, s *Service, g *gate, call func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		call()
	}()
	<-g.entered
	if err := s.Delete(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	close(g.release)
	<-done
}

// slowOpenEngine pauses the first Open until released, to interleave a
// Delete with it.
type slowOpenEngine struct {
	Engine
	gate
}

func (e *slowOpenEngine) Open(ctx context.Context, id string) (Handle, error) {
	h, err := e.Engine.Open(ctx, id)
	e.pass()
	return h, err
}

func TestDeletedKeyIsNotRevivedByAnOpenInFlight(t *testing.T) {
	ctx := context.Background()
	base, _ := newFileService(t)
	if _, _, err := base.CreateKey(ctx, "k", UsageSign, nil); err != nil {
		t.Fatal(err)
	}
	slow := &slowOpenEngine{Engine: base.engine, gate: newGate()}
	s := NewService(slow, nil, base.log)
	deleteWhilePaused(t, s, &slow.gate, func() {
		s.Sign(ctx, "k", MechHMACSHA256, []byte("x")) // opens and pauses
	})
	if s.Exists(ctx, "k") {
		t.Fatal("a key deleted while it was being opened is still served")
	}
	if _, err := s.Sign(ctx, "k", MechHMACSHA256, []byte("x")); !fault.Is(err, fault.NotFound) {
		t.Fatalf("Sign after Delete = %v, want NotFound", err)
	}
}

// slowDescribeEngine pauses the first Describe until released.
type slowDescribeEngine struct {
	*FileEngine
	gate
}

func (e *slowDescribeEngine) Describe(ctx context.Context, id string) (Info, error) {
	info, err := e.FileEngine.Describe(ctx, id)
	e.pass()
	return info, err
}

// TestDeletedOrReplacedKeyIsNotDescribedFromAStaleCache: a caller listing
// keys races a Delete and a Move onto the same id; the description read
// before them must not be cached and served after them.
func TestDeletedOrReplacedKeyIsNotDescribedFromAStaleCache(t *testing.T) {
	ctx := context.Background()
	base, _ := newFileService(t)
	for _, id := range []string{"k", "other"} {
		if _, _, err := base.CreateKeyPair(ctx, id, "ec-p256"); err != nil {
			t.Fatal(err)
		}
	}
	slow := &slowDescribeEngine{FileEngine: base.engine.(*FileEngine), gate: newGate()}
	s := NewService(slow, nil, base.log)
	var old Info
	deleteWhilePaused(t, s, &slow.gate, func() {
		old, _ = s.Describe(ctx, "k") // reads k's file, then pauses
	})
	if s.Exists(ctx, "k") {
		t.Fatal("a key deleted while it was being described is still listed")
	}
	// A new key under the same id is described as itself, not as the old one.
	if err := s.Move(ctx, "other", "k"); err != nil {
		t.Fatal(err)
	}
	info, err := s.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if string(info.PublicDER) == string(old.PublicDER) {
		t.Fatal("the moved key is described with the deleted key's public key")
	}
}
