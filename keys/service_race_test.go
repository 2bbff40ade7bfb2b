package keys

import (
	"context"
	"sync"
	"testing"

	"github.com/edgev2/edgev2/internal/fault"
)

// slowOpenEngine pauses the first Open until released, to interleave a
// Delete with it.
type slowOpenEngine struct {
	Engine
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func (e *slowOpenEngine) Open(ctx context.Context, id string) (Handle, error) {
	h, err := e.Engine.Open(ctx, id)
	e.once.Do(func() {
		close(e.entered)
		<-e.release
	})
	return h, err
}

func TestDeletedKeyIsNotRevivedByAnOpenInFlight(t *testing.T) {
	ctx := context.Background()
	base, _ := newFileService(t)
	if _, _, err := base.CreateKey(ctx, "k", UsageSign, nil); err != nil {
		t.Fatal(err)
	}
	slow := &slowOpenEngine{Engine: base.engine, entered: make(chan struct{}), release: make(chan struct{})}
	s := NewService(slow, nil, base.log)
	done := make(chan error)
	go func() {
		_, err := s.Sign(ctx, "k", MechHMACSHA256, []byte("x")) // opens and pauses
		done <- err
	}()
	<-slow.entered
	if err := s.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	close(slow.release)
	<-done
	if s.Exists(ctx, "k") {
		t.Fatal("a key deleted while it was being opened is still served")
	}
	if _, err := s.Sign(ctx, "k", MechHMACSHA256, []byte("x")); !fault.Is(err, fault.NotFound) {
		t.Fatalf("Sign after Delete = %v, want NotFound", err)
	}
}
