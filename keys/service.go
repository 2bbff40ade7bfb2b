package keys

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"log/slog"
	"sort"
	"strings"
	"sync"

	"github.com/edgev2/edgev2/internal/fault"
	"github.com/edgev2/edgev2/internal/lru"
	keyderivation "github.com/edgev2/edgev2/keys/derivation"
)

// Service is the key store as callers see it: one engine for the keys it
// makes, plus read-only preloaded keys, with every operation checked against
// the key's type before it reaches the engine.
type Service struct {
	engine    Engine
	preloaded map[string]Handle
	broken    map[string]error // preloaded keys that could not be loaded, and why
	log       *slog.Logger

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
	return &Service{engine: engine, preloaded: preloaded, broken: map[string]error{}, log: log,
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
	for _, id := range ids {
		seen[id] = true
	}
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
	s.create.Lock()
	defer s.create.Unlock()
	s.forget(id)
	err := s.engine.Delete(ctx, id)
	s.forget(id)
	if err != nil {
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
	}
	s.create.Lock()
	defer s.create.Unlock()
	s.forget(from, to)
	err := s.engine.Move(ctx, from, to)
	s.forget(from, to)
	if err != nil {
		return err
	}
	s.log.Info("key moved", "from", from, "to", to)
	return nil
}

func checkData(what string, data []byte) error {
	if len(data) > MaxData {
		return fault.New(fault.InvalidArgs, "%s is %d bytes; the limit is %d (1 MiB)", what, len(data), MaxData)
	}
	return nil
}

// keyFor is the common start of every key operation: the payload is within
// the limit, the key exists, and mech is a mechanism of kind op that fits it.
func (s *Service) keyFor(ctx context.Context, id, mech string, op opKind, what string, data []byte) (Handle, Info, error) {
	if err := checkData(what, data); err != nil {
		return nil, Info{}, err
	}
	h, err := s.handle(ctx, id)
	if err != nil {
		return nil, Info{}, err
	}
	info := h.Info()
	if err := checkMechanism(info, mech, op); err != nil {
		return nil, Info{}, err
	}
	return h, info, nil
}

// Sign signs data with key id using mech.
func (s *Service) Sign(ctx context.Context, id, mech string, data []byte) ([]byte, error) {
	h, _, err := s.keyFor(ctx, id, mech, opSign, "data", data)
	if err != nil {
		return nil, err
	}
	if mech == MechHMACSHA256 {
		return h.HMACSHA256(ctx, data)
	}
	digest, hash, err := digestFor(mech, data)
	if err != nil {
		return nil, err
	}
	return h.SignDigest(ctx, digest, hash, mech == MechRSAPSSSHA256 || mech == MechRSAPSS)
}

// Verify checks a signature; a malformed signature is false, not an error.
func (s *Service) Verify(ctx context.Context, id, mech string, data, sig []byte) (bool, error) {
	h, info, err := s.keyFor(ctx, id, mech, opSign, "data", data)
	if err != nil {
		return false, err
	}
	if mech == MechHMACSHA256 {
		mac, err := h.HMACSHA256(ctx, data)
		if err != nil {
			return false, err
		}
		return hmac.Equal(mac, sig), nil
	}
	digest, hash, err := digestFor(mech, data)
	if err != nil {
		return false, err
	}
	switch pub := info.Public.(type) {
	case *ecdsa.PublicKey:
		return ecdsa.VerifyASN1(pub, digest, sig), nil
	case *rsa.PublicKey:
		if mech == MechRSAPSSSHA256 || mech == MechRSAPSS {
			return rsa.VerifyPSS(pub, hash, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto}) == nil, nil
		}
		return rsa.VerifyPKCS1v15(pub, hash, digest, sig) == nil, nil
	}
	return false, fault.New(fault.Failed, "key %q has no public key", id)
}

// CipherOptions are the options of Encrypt and Decrypt.
type CipherOptions struct {
	IV  []byte // aes-256-gcm; nil = random, carried in front of the ciphertext
	AAD []byte
}

const gcmIVLen, gcmTagLen = 12, 16

// Encrypt encrypts with key id using mech.
func (s *Service) Encrypt(ctx context.Context, id, mech string, plaintext []byte, opt CipherOptions) ([]byte, error) {
	h, info, err := s.keyFor(ctx, id, mech, opEncrypt, "plaintext", plaintext)
	if err != nil {
		return nil, err
	}
	if mech == MechRSAOAEPSHA256 {
		if opt.IV != nil || opt.AAD != nil {
			return nil, fault.New(fault.InvalidArgs, "options \"iv\" and \"aad\" are for aes-256-gcm, not rsa-oaep-sha256")
		}
		pub := info.Public.(*rsa.PublicKey)
		if max := pub.Size() - 2*sha256.Size - 2; len(plaintext) > max {
			return nil, fault.New(fault.InvalidArgs, "rsa-oaep-sha256 with key %q takes at most %d bytes of plaintext, got %d", id, max, len(plaintext))
		}
		return rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, plaintext, nil)
	}
	return gcmSeal(opt, plaintext, func(iv, aad, pt []byte) ([]byte, error) { return h.SealGCM(ctx, iv, aad, pt) })
}

// gcmSeal is AES-256-GCM encryption with Encrypt's iv rules: a given iv is
// 12 bytes and the result is ciphertext || tag; without one a random iv is
// made and put in front.
func gcmSeal(opt CipherOptions, plaintext []byte, seal func(iv, aad, pt []byte) ([]byte, error)) ([]byte, error) {
	iv := opt.IV
	if iv == nil {
		iv = make([]byte, gcmIVLen)
		if _, err := rand.Read(iv); err != nil {
			return nil, err
		}
		ct, err := seal(iv, opt.AAD, plaintext)
		if err != nil {
			return nil, err
		}
		return append(iv, ct...), nil
	}
	if len(iv) != gcmIVLen {
		return nil, fault.New(fault.InvalidArgs, "option \"iv\" must be %d bytes for aes-256-gcm, got %d", gcmIVLen, len(iv))
	}
	return seal(iv, opt.AAD, plaintext)
}

// Decrypt decrypts what Encrypt made.
func (s *Service) Decrypt(ctx context.Context, id, mech string, ciphertext []byte, opt CipherOptions) ([]byte, error) {
	h, info, err := s.keyFor(ctx, id, mech, opEncrypt, "ciphertext", ciphertext)
	if err != nil {
		return nil, err
	}
	if mech == MechRSAOAEPSHA256 {
		if opt.IV != nil || opt.AAD != nil {
			return nil, fault.New(fault.InvalidArgs, "options \"iv\" and \"aad\" are for aes-256-gcm, not rsa-oaep-sha256")
		}
		if len(ciphertext) != info.Public.(*rsa.PublicKey).Size() {
			return nil, fault.New(fault.InvalidArgs, "rsa-oaep-sha256 ciphertext for key %q must be %d bytes, got %d", id, info.Public.(*rsa.PublicKey).Size(), len(ciphertext))
		}
		return h.DecryptOAEP(ctx, ciphertext)
	}
	return gcmOpen(opt, ciphertext, func(iv, aad, ct []byte) ([]byte, error) { return h.OpenGCM(ctx, iv, aad, ct) })
}

// gcmOpen reverses gcmSeal.
func gcmOpen(opt CipherOptions, ciphertext []byte, open func(iv, aad, ct []byte) ([]byte, error)) ([]byte, error) {
	iv := opt.IV
	if iv == nil {
		if len(ciphertext) < gcmIVLen+gcmTagLen {
			return nil, fault.New(fault.InvalidArgs, "aes-256-gcm ciphertext without option \"iv\" must start with the 12-byte iv and end with the 16-byte tag; got only %d bytes", len(ciphertext))
		}
		iv, ciphertext = ciphertext[:gcmIVLen], ciphertext[gcmIVLen:]
	} else if len(iv) != gcmIVLen {
		return nil, fault.New(fault.InvalidArgs, "option \"iv\" must be %d bytes for aes-256-gcm, got %d", gcmIVLen, len(iv))
	}
	if len(ciphertext) < gcmTagLen {
		return nil, fault.New(fault.InvalidArgs, "aes-256-gcm ciphertext must hold at least the 16-byte tag; got %d bytes", len(ciphertext))
	}
	return open(iv, opt.AAD, ciphertext)
}

// ExportDerived returns HMAC-SHA256(master, derivation): the key a module
// SAS key is made from.
func (s *Service) ExportDerived(ctx context.Context, id string, derivation []byte) ([]byte, error) {
	if err := checkData("derivation", derivation); err != nil {
		return nil, err
	}
	if bytes.HasPrefix(derivation, derivedAESPrefix) {
		return nil, fault.New(fault.InvalidArgs, "derivation data starting with the encoding of %q is reserved for EncryptDerived and DecryptDerived", derivedAESLabel)
	}
	h, err := s.master(ctx, id)
	if err != nil {
		return nil, err
	}
	return h.HMACSHA256(ctx, derivation)
}

// master opens key id and checks it is a master key (usage derive).
func (s *Service) master(ctx context.Context, id string) (Handle, error) {
	h, err := s.handle(ctx, id)
	if err != nil {
		return nil, err
	}
	info := h.Info()
	if info.Type != Symmetric || info.Usage != UsageDerive {
		return nil, fault.New(fault.InvalidArgs, "key %q of type %s cannot derive keys; a master key is a symmetric key created with usage \"derive\"", id, describe(info))
	}
	return h, nil
}

// SignDerived signs data with the key derived from master key id.
func (s *Service) SignDerived(ctx context.Context, id string, derivation []byte, mech string, data []byte) ([]byte, error) {
	if mech != MechHMACSHA256 {
		return nil, fault.New(fault.InvalidArgs, "derived keys sign with \"hmac-sha256\" only, not %q", mech)
	}
	if err := checkData("data", data); err != nil {
		return nil, err
	}
	derived, err := s.ExportDerived(ctx, id, derivation)
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, derived)
	m.Write(data)
	clear(derived)
	return m.Sum(nil), nil
}

// derivedAESLabel separates the AES keys of EncryptDerived from the HMAC
// keys of SignDerived and ExportDerived: an AES key is
// HMAC-SHA256(master, Encode(derivedAESLabel, derivation)), and
// SignDerived/ExportDerived refuse derivation data that starts like that
// encoding, so holders of org.edgev2.keys.use or .export on a master cannot
// compute or obtain the AES keys made from it through them.
const derivedAESLabel = "edgev2 derived aes-256-gcm key"

// derivedAESPrefix is how every AES derivation input starts (field count,
// then the label as the first field).
var derivedAESPrefix = keyderivation.Encode([]byte(derivedAESLabel), nil)[:4+4+len(derivedAESLabel)]

// derivedAEAD derives the AES-256-GCM key for derivation from master key id
// inside this process: on a PKCS#11 token the HMAC runs in the token, and
// the derived bytes live only in this call's memory.
func (s *Service) derivedAEAD(ctx context.Context, id, mech string, derivation []byte) (cipher.AEAD, error) {
	if mech != MechAES256GCM {
		return nil, fault.New(fault.InvalidArgs, "derived keys encrypt with \"aes-256-gcm\" only, not %q", mech)
	}
	if err := checkData("derivation", derivation); err != nil {
		return nil, err
	}
	h, err := s.master(ctx, id)
	if err != nil {
		return nil, err
	}
	key, err := h.HMACSHA256(ctx, keyderivation.Encode([]byte(derivedAESLabel), derivation))
	if err != nil {
		return nil, err
	}
	defer clear(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fault.Wrap(fault.Failed, err, "derive an AES key from %q", id)
	}
	return cipher.NewGCM(block)
}

// EncryptDerived is Encrypt (aes-256-gcm, same options) with the AES key
// derived from master key id for derivation.
func (s *Service) EncryptDerived(ctx context.Context, id string, derivation []byte, mech string, plaintext []byte, opt CipherOptions) ([]byte, error) {
	if err := checkData("plaintext", plaintext); err != nil {
		return nil, err
	}
	aead, err := s.derivedAEAD(ctx, id, mech, derivation)
	if err != nil {
		return nil, err
	}
	return gcmSeal(opt, plaintext, func(iv, aad, pt []byte) ([]byte, error) { return aead.Seal(nil, iv, pt, aad), nil })
}

// DecryptDerived reverses EncryptDerived.
func (s *Service) DecryptDerived(ctx context.Context, id string, derivation []byte, mech string, ciphertext []byte, opt CipherOptions) ([]byte, error) {
	if err := checkData("ciphertext", ciphertext); err != nil {
		return nil, err
	}
	aead, err := s.derivedAEAD(ctx, id, mech, derivation)
	if err != nil {
		return nil, err
	}
	return gcmOpen(opt, ciphertext, func(iv, aad, ct []byte) ([]byte, error) {
		pt, err := aead.Open(nil, iv, ct, aad)
		if err != nil {
			return nil, fault.New(fault.InvalidArgs, "key derived from %q: AES-256-GCM authentication failed (wrong derivation, iv, aad or tampered ciphertext)", id)
		}
		return pt, nil
	})
}

func (s *Service) isPreloaded(id string) bool {
	_, ok := s.preloaded[id]
	_, bad := s.broken[id]
	return ok || bad
}
