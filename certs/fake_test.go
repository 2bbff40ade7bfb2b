package certs

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/edgev2/edgev2/fault"
)

// fakeKeys is an in-memory KeyStore; fail makes signing with a key fail
// (a CA whose key is unreachable).
type fakeKeys struct {
	mu   sync.Mutex
	keys map[string]*ecdsa.PrivateKey
	fail map[string]bool
}

func newFakeKeys() *fakeKeys {
	return &fakeKeys{keys: map[string]*ecdsa.PrivateKey{}, fail: map[string]bool{}}
}

type fakeSigner struct {
	k    *fakeKeys
	id   string
	priv *ecdsa.PrivateKey
}

func (s fakeSigner) Public() crypto.PublicKey { return &s.priv.PublicKey }
func (s fakeSigner) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	s.k.mu.Lock()
	failing := s.k.fail[s.id]
	s.k.mu.Unlock()
	if failing {
		return nil, fault.New(fault.Unavailable, "key %q: the Keys service is unreachable", s.id)
	}
	return s.priv.Sign(r, d, o)
}

func (k *fakeKeys) Signer(ctx context.Context, id string) (crypto.Signer, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	p, ok := k.keys[id]
	if !ok {
		return nil, fault.New(fault.NotFound, "key %q not found", id)
	}
	return fakeSigner{k, id, p}, nil
}

func (k *fakeKeys) CreateKeyPair(ctx context.Context, id, algs string) (crypto.Signer, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.keys[id]; !ok {
		k.keys[id], _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	return fakeSigner{k, id, k.keys[id]}, nil
}

func (k *fakeKeys) MoveKey(ctx context.Context, from, to string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	p, ok := k.keys[from]
	if !ok {
		return errors.New("no key " + from)
	}
	k.keys[to] = p
	delete(k.keys, from)
	return nil
}

func (k *fakeKeys) DeleteKey(ctx context.Context, id string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.keys[id]; !ok {
		return fault.New(fault.NotFound, "key %q not found", id)
	}
	delete(k.keys, id)
	return nil
}

func (k *fakeKeys) setFail(id string, on bool) {
	k.mu.Lock()
	k.fail[id] = on
	k.mu.Unlock()
}

// fakeClock only moves when told; After channels fire when Advance passes
// their deadline. waiting reports each new waiter, so a test can advance
// exactly when the renewal loop sleeps.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	timers  []fakeTimer
	waiting chan struct{}
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock(t time.Time) *fakeClock {
	return &fakeClock{now: t, waiting: make(chan struct{}, 100)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.timers = append(c.timers, fakeTimer{c.now.Add(d), ch})
	select {
	case c.waiting <- struct{}{}:
	default:
	}
	return ch
}

// Advance moves time and fires due timers.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	sort.Slice(c.timers, func(i, j int) bool { return c.timers[i].at.Before(c.timers[j].at) })
	var keep []fakeTimer
	for _, t := range c.timers {
		if !t.at.After(c.now) {
			t.ch <- c.now
		} else {
			keep = append(keep, t)
		}
	}
	c.timers = keep
}
