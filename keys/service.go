package keys

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"log/slog"
	"sort"
	"strings"
	"sync"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/lru"
)

// Service is the key store as callers see it: one engine for the keys it
// makes, plus read-only preloaded keys, with every operation checked against
// the key's type before it reaches the engine.
type Service struct {
	engine    Engine
	preloaded map[string]Handle
	broken    map[string]error // preloaded keys that could not be loaded, and why
	// aliases are the engine's own ids (token labels) of preloaded keys,
	// mapped to the configuration's id: no call reaches the key under them.
	aliases map[string]string
	log     *slog.Logger

	mu sync.Mutex
	// handles are opened engine keys, so Sign does not re-read the store;
	// bounded, least recently used evicted, so listing or using many keys
	// does not keep every private key in memory.
	handles *lru.Cache[string, Handle]
	// infos are descriptions (no private key, public key as DER only) of
	// keys listed or used, so listing 10,000 keys twice reads no file twice.
	infos *lru.Cache[string, Info]
	gen   uint64 // bumped by forget, so an Open racing a Delete/Move is not cached
	// create serialises create/delete/move so "create if missing" is atomic.
	create sync.Mutex
}

// NewService serves engine's keys plus the preloaded ones.
func NewService(engine Engine, preloaded map[string]Handle, log *slog.Logger) *Service {
	if preloaded == nil {
		preloaded = map[string]Handle{}
	}
	return &Service{engine: engine, preloaded: preloaded, broken: map[string]error{}, aliases: map[string]string{}, log: log,
		handles: lru.New[string, Handle](HandleCacheSize), infos: lru.New[string, Info](InfoCacheSize)}
}

// HandleCacheSize bounds the opened keys kept in memory; InfoCacheSize the
// descriptions (about 300 bytes each).
const (
	HandleCacheSize = 1024
	InfoCacheSize   = 16384
)

// Describer is an engine that can describe a key without opening its
// private part (the file engine reads the file's headers).
type Describer interface {
	Describe(ctx context.Context, id string) (Info, error)
}

// MarkUnavailable records a preloaded key that could not be loaded: it stays
// listed, and every use of it says why it is unavailable. Call before serving.
func (s *Service) MarkUnavailable(id string, err error) {
	s.broken[id] = fault.Wrap(fault.Unavailable, err, "preloaded key %q is unavailable: %s (fix [preloaded_keys] and restart keyd)", id, fault.Message(err))
}

// MarkEngineAlias records that the engine would serve preloaded key id as
// engineID (its label on the base token, or the name of its file in the
// file engine's store): the key is bound to id by the
// configuration, read-only, and polkit rules name it by id, so engineID is
// neither served, listed, moved, replaced nor deleted. Call before serving.
func (s *Service) MarkEngineAlias(engineID, id string) { s.aliases[engineID] = id }

// aliased is the refusal of an engine id that is a preloaded key's alias.
func (s *Service) aliased(id string) error {
	pre, ok := s.aliases[id]
	if !ok || s.preloaded[id] != nil {
		return nil
	}
	return fault.New(fault.ReadOnly, "key %q is preloaded key %q ([preloaded_keys]) in the %s engine's store; it is used, and kept, under that id only", id, pre, s.engine.Name())
}

// TokenMechanisms names the mechanisms the engine's token offers (nil for
// the file engine, which does every mechanism keyd knows).
func (s *Service) TokenMechanisms() []string {
	if t, ok := s.engine.(interface{ TokenMechanisms() []string }); ok {
		return t.TokenMechanisms()
	}
	return nil
}

// EngineName is the engine generated keys go to.
func (s *Service) EngineName() string { return s.engine.Name() }

// Close closes the engine.
func (s *Service) Close() error { return s.engine.Close() }

func (s *Service) handle(ctx context.Context, id string) (Handle, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	if h, ok := s.preloaded[id]; ok {
		return h, nil
	}
	if err, ok := s.broken[id]; ok {
		return nil, err
	}
	if err := s.aliased(id); err != nil {
		return nil, err
	}
	s.mu.Lock()
	h, ok := s.handles.Get(id)
	gen := s.gen
	s.mu.Unlock()
	if ok {
		return h, nil
	}
	h, err := s.engine.Open(ctx, id)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.gen == gen { // no Delete/Move forgot keys while we were opening
		s.handles.Put(id, h)
	}
	s.mu.Unlock()
	return h, nil
}

func (s *Service) forget(ids ...string) {
	s.mu.Lock()
	s.gen++
	for _, id := range ids {
		s.handles.Delete(id)
		s.infos.Delete(id)
	}
	s.mu.Unlock()
}

// Get describes a key, with its public key parsed.
func (s *Service) Get(ctx context.Context, id string) (Info, error) {
	info, err := s.Describe(ctx, id)
	if err == nil && info.Public == nil && info.PublicDER != nil {
		if info.Public, err = x509.ParsePKIXPublicKey(info.PublicDER); err != nil {
			return Info{}, fault.Wrap(fault.Failed, err, "key %q: its stored public key does not parse", id)
		}
	}
	return info, err
}

// Describe describes a key; an asymmetric key's public key may be given only
// as PublicDER. It does not open (or cache) the private key when the engine
// can describe it without: listing every key's properties
// (GetManagedObjects) stays cheap and leaves memory as it was.
func (s *Service) Describe(ctx context.Context, id string) (Info, error) {
	if err := ValidateID(id); err != nil {
		return Info{}, err
	}
	if h, ok := s.preloaded[id]; ok {
		return h.Info(), nil
	}
	if err, ok := s.broken[id]; ok {
		return Info{}, err
	}
	if err := s.aliased(id); err != nil {
		return Info{}, err
	}
	s.mu.Lock()
	h, ok := s.handles.Get(id)
	info, described := s.infos.Get(id)
	gen := s.gen
	s.mu.Unlock()
	if ok {
		return h.Info(), nil
	}
	if described {
		return info, nil
	}
	if d, ok := s.engine.(Describer); ok {
		info, err := d.Describe(ctx, id)
		if err != nil {
			return Info{}, err
		}
		if info.PublicDER != nil {
			info.Public = nil // callers that need it open the key
		}
		s.mu.Lock()
		if s.gen == gen {
			s.infos.Put(id, info)
		}
		s.mu.Unlock()
		return info, nil
	}
	h, err := s.handle(ctx, id)
	if err != nil {
		return Info{}, err
	}
	return h.Info(), nil
}

// CachedHandles is how many opened keys are held in memory.
func (s *Service) CachedHandles() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.handles.Len()
}

// Exists reports whether id names a key (usable or not).
func (s *Service) Exists(ctx context.Context, id string) bool {
	_, err := s.Describe(ctx, id)
	return err == nil || fault.Is(err, fault.Unavailable)
}

// List returns every key id, stored and preloaded, sorted.
func (s *Service) List(ctx context.Context) ([]string, error) {
	ids, err := s.engine.List(ctx)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	kept := ids[:0]
	for _, id := range ids {
		if s.aliased(id) == nil {
			seen[id] = true
			kept = append(kept, id)
		}
	}
	ids = kept
	for _, m := range []map[string]Handle{s.preloaded} {
		for id := range m {
			if !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
	}
	for id := range s.broken {
		if !seen[id] {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// CreateKey makes a symmetric key if id is free, importing value if given.
// An existing key with the same usage (and value) is returned as it is.
func (s *Service) CreateKey(ctx context.Context, id string, usage Usage, value []byte) (info Info, created bool, err error) {
	if err := ValidateID(id); err != nil {
		return Info{}, false, err
	}
	switch usage {
	case UsageSign, UsageDerive:
		if value != nil && (len(value) < 32 || len(value) > 128) {
			return Info{}, false, fault.New(fault.InvalidArgs, "a sign key value must be 32..128 bytes (HMAC-SHA256 keys shorter than the hash are refused by tokens), got %d", len(value))
		}
	case UsageEncrypt:
		if value != nil && len(value) != 32 {
			return Info{}, false, fault.New(fault.InvalidArgs, "an encrypt (AES-256) key value must be 32 bytes, got %d", len(value))
		}
	default:
		return Info{}, false, fault.New(fault.InvalidArgs, "unknown key usage %q (want \"sign\", \"encrypt\" or \"derive\")", usage)
	}
	spec := Spec{Type: Symmetric, Usage: usage}
	s.create.Lock()
	defer s.create.Unlock()
	if h, err := s.handle(ctx, id); err == nil {
		return s.existing(ctx, h, spec, value)
	} else if !fault.Is(err, fault.NotFound) {
		return Info{}, false, err
	}
	var h Handle
	if value != nil {
		h, err = s.engine.Import(ctx, id, spec, value)
	} else {
		h, err = s.engine.Generate(ctx, id, spec)
	}
	if err != nil {
		return Info{}, false, err
	}
	s.forget(id)
	s.log.Info("key created", "key_id", id, "type", spec.String(), "imported", value != nil)
	return h.Info(), true, nil
}

// existing decides whether an existing key satisfies a create request. A
// value is compared without reading the stored secret: both are used on the
// same probe and the outputs compared.
func (s *Service) existing(ctx context.Context, h Handle, spec Spec, value []byte) (Info, bool, error) {
	info := h.Info()
	if info.Type != spec.Type || info.Usage != spec.Usage {
		return Info{}, false, fault.New(fault.AlreadyExists, "key %q already exists as %s, not %s", info.ID, describe(info), spec)
	}
	if value == nil {
		return info, false, nil
	}
	probe := []byte("edgev2 key comparison probe")
	var stored, want []byte
	var err error
	if spec.Usage != UsageEncrypt {
		stored, err = h.HMACSHA256(ctx, probe)
		m := hmac.New(sha256.New, value)
		m.Write(probe)
		want = m.Sum(nil)
	} else {
		iv := make([]byte, 12)
		stored, err = h.SealGCM(ctx, iv, nil, probe)
		block, _ := aes.NewCipher(value)
		aead, _ := cipher.NewGCM(block)
		want = aead.Seal(nil, iv, probe, nil)
	}
	if err != nil {
		return Info{}, false, err
	}
	if subtle.ConstantTimeCompare(stored, want) != 1 {
		return Info{}, false, fault.New(fault.AlreadyExists, "key %q already exists with a different value; delete it first to replace it", info.ID)
	}
	return info, false, nil
}

// ParseAlgorithms parses a preference list like "ec-p256:rsa-2048:*".
func ParseAlgorithms(s string) ([]Type, error) {
	if s == "" {
		return nil, fault.New(fault.InvalidArgs, "algorithms is empty; give a list like \"ec-p256:rsa-2048:*\"")
	}
	var out []Type
	seen := map[Type]bool{}
	for _, part := range strings.Split(s, ":") {
		if part == "*" {
			for _, t := range PairTypes {
				if !seen[t] {
					seen[t] = true
					out = append(out, t)
				}
			}
			continue
		}
		t, err := ParseType(part)
		if err != nil {
			return nil, err
		}
		if t == Symmetric {
			return nil, fault.New(fault.InvalidArgs, "algorithms lists \"symmetric\"; use CreateKey for symmetric keys")
		}
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out, nil
}

// CreateKeyPair makes an asymmetric key of the first listed type the engine
// can make, unless a key with a listed type already exists under id.
func (s *Service) CreateKeyPair(ctx context.Context, id, algorithms string) (info Info, created bool, err error) {
	if err := ValidateID(id); err != nil {
		return Info{}, false, err
	}
	types, err := ParseAlgorithms(algorithms)
	if err != nil {
		return Info{}, false, err
	}
	s.create.Lock()
	defer s.create.Unlock()
	if h, err := s.handle(ctx, id); err == nil {
		info := h.Info()
		for _, t := range types {
			if info.Type == t {
				return info, false, nil
			}
		}
		return Info{}, false, fault.New(fault.AlreadyExists, "key %q already exists as %s, which is not in %q", id, describe(info), algorithms)
	} else if !fault.Is(err, fault.NotFound) {
		return Info{}, false, err
	}
	var reasons []string
	kind := fault.InvalidArgs
	for _, t := range types {
		h, err := s.engine.Generate(ctx, id, Spec{Type: t})
		if err == nil {
			s.forget(id)
			s.log.Info("key pair created", "key_id", id, "type", t)
			return h.Info(), true, nil
		}
		// The engine failed, not just "can't make this type": stop.
		if !fault.Is(err, fault.InvalidArgs) && !fault.Is(err, fault.NotSupported) {
			return Info{}, false, err
		}
		if fault.Is(err, fault.NotSupported) {
			kind = fault.NotSupported // a token limitation is not the caller's mistake
		}
		reasons = append(reasons, fault.Message(err))
	}
	return Info{}, false, fault.New(kind, "the %s engine can make none of %q: %s", s.engine.Name(), algorithms, strings.Join(reasons, "; "))
}

// Delete removes a stored key.
func (s *Service) Delete(ctx context.Context, id string) error {
	if err := ValidateID(id); err != nil {
		return err
	}
	if s.isPreloaded(id) {
		return fault.New(fault.ReadOnly, "key %q is preloaded from the configuration; remove it from [preloaded_keys] instead", id)
	}
	if err := s.aliased(id); err != nil {
		return err
	}
	if err := s.changeStored(func() error { return s.engine.Delete(ctx, id) }, id); err != nil {
		return err
	}
	s.log.Info("key deleted", "key_id", id)
	return nil
}

// Move renames a stored key, replacing any stored key under to.
func (s *Service) Move(ctx context.Context, from, to string) error {
	if err := ValidateID(from); err != nil {
		return err
	}
	if err := ValidateID(to); err != nil {
		return err
	}
	if from == to {
		return fault.New(fault.InvalidArgs, "cannot move key %q onto itself", from)
	}
	for _, id := range []string{from, to} {
		if s.isPreloaded(id) {
			return fault.New(fault.ReadOnly, "key %q is preloaded from the configuration and cannot be moved or replaced", id)
		}
		if err := s.aliased(id); err != nil {
			return err
		}
	}
	if err := s.changeStored(func() error { return s.engine.Move(ctx, from, to) }, from, to); err != nil {
		return err
	}
	s.log.Info("key moved", "from", from, "to", to)
	return nil
}

// changeStored runs change, a Delete or Move of the stored keys ids, under
// the create lock, forgetting their cached handles and infos before and
// after it (a load racing the change cannot keep what it read).
func (s *Service) changeStored(change func() error, ids ...string) error {
	s.create.Lock()
	defer s.create.Unlock()
	s.forget(ids...)
	err := change()
	s.forget(ids...)
	return err
}

func (s *Service) isPreloaded(id string) bool {
	_, ok := s.preloaded[id]
	_, bad := s.broken[id]
	return ok || bad
}
