package certs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/edgev2/edgev2/certs/api"
	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/atomicfile"
	"github.com/edgev2/edgev2/internal/label"
)

// Store keeps certificate chains as PEM files (0600) in one directory, named
// by escaped id, plus read-only preloaded files that are re-read when they
// change on disk.
type Store struct {
	dir       string
	preloaded map[string]string // id → path; read on every Get, so edits show at once
}

const certSuffix = ".pem"

// OpenStore uses dir (created 0700) for stored certificates.
func OpenStore(dir string, preloaded map[string]string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create certificate directory %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("restrict certificate directory %s: %w", dir, err)
	}
	stale, _ := filepath.Glob(filepath.Join(dir, ".tmp-*"))
	for _, f := range stale {
		os.Remove(f)
	}
	if preloaded == nil {
		preloaded = map[string]string{}
	}
	return &Store{dir: dir, preloaded: preloaded}, nil
}

func (s *Store) path(id string) string {
	name := label.Escape(id)
	if len(name) > 200 {
		sum := sha256.Sum256([]byte(id))
		name = "h-" + hex.EncodeToString(sum[:])
	}
	return filepath.Join(s.dir, name+certSuffix)
}

// IsPreloaded reports whether id comes from [preloaded_certs].
func (s *Store) IsPreloaded(id string) bool {
	_, ok := s.preloaded[id]
	return ok
}

// Get loads a chain; fault.NotFound if there is none.
func (s *Store) Get(id string) (Info, error) {
	if err := api.ValidateID(id); err != nil {
		return Info{}, err
	}
	if p, ok := s.preloaded[id]; ok {
		data, err := os.ReadFile(p)
		if err != nil {
			return Info{}, fault.Wrap(fault.Unavailable, err, "preloaded certificate %q cannot be read from %s", id, p)
		}
		chain, err := api.ParseChainPEM(string(data))
		if err != nil {
			return Info{}, fault.Wrap(fault.Unavailable, err, "preloaded certificate %q in %s is invalid: %s", id, p, fault.Message(err))
		}
		return Info{ID: id, Chain: chain, Preloaded: true}, nil
	}
	data, err := os.ReadFile(s.path(id))
	if errors.Is(err, os.ErrNotExist) {
		return Info{}, fault.New(fault.NotFound, "certificate %q not found", id)
	}
	if err != nil {
		return Info{}, fmt.Errorf("read certificate %q: %w", id, err)
	}
	storedID, body, _ := strings.Cut(string(data), "\n")
	if storedID != "# edgev2-id "+hex.EncodeToString([]byte(id)) {
		return Info{}, fault.New(fault.NotFound, "certificate %q not found", id)
	}
	chain, err := api.ParseChainPEM(body)
	if err != nil {
		return Info{}, fmt.Errorf("stored certificate %q is unreadable: %w", id, err)
	}
	return Info{ID: id, Chain: chain}, nil
}

// Put stores a chain atomically, replacing any stored chain under id.
func (s *Store) Put(id string, chain string) error {
	if err := api.ValidateID(id); err != nil {
		return err
	}
	if s.IsPreloaded(id) {
		return fault.New(fault.ReadOnly, "certificate %q is preloaded from the configuration; change [preloaded_certs] instead", id)
	}
	// The first line records the id, so List can recover ids from hashed names.
	data := "# edgev2-id " + hex.EncodeToString([]byte(id)) + "\n" + chain
	if err := atomicfile.WriteFile(s.path(id), []byte(data), 0o600); err != nil {
		return fmt.Errorf("store certificate %q: %w", id, err)
	}
	return nil
}

// Delete removes a stored chain.
func (s *Store) Delete(id string) error {
	if err := api.ValidateID(id); err != nil {
		return err
	}
	if s.IsPreloaded(id) {
		return fault.New(fault.ReadOnly, "certificate %q is preloaded from the configuration; remove it from [preloaded_certs] instead", id)
	}
	err := os.Remove(s.path(id))
	if errors.Is(err, os.ErrNotExist) {
		return fault.New(fault.NotFound, "certificate %q not found", id)
	}
	if err != nil {
		return fmt.Errorf("delete certificate %q: %w", id, err)
	}
	return atomicfile.SyncDir(s.dir)
}

// List returns every id, stored and preloaded, sorted.
func (s *Store) List() ([]string, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("list certificates: %w", err)
	}
	seen := map[string]bool{}
	var ids []string
	for _, ent := range ents {
		if !ent.Type().IsRegular() || !strings.HasSuffix(ent.Name(), certSuffix) || strings.HasPrefix(ent.Name(), ".") {
			continue
		}
		f, err := os.Open(filepath.Join(s.dir, ent.Name()))
		if err != nil {
			continue
		}
		buf := make([]byte, 2*label.MaxIDLen+32)
		n, _ := f.Read(buf)
		f.Close()
		first, _, _ := strings.Cut(string(buf[:n]), "\n")
		raw, err := hex.DecodeString(strings.TrimPrefix(first, "# edgev2-id "))
		if err != nil || !strings.HasPrefix(first, "# edgev2-id ") {
			continue
		}
		if id := string(raw); s.path(id) == filepath.Join(s.dir, ent.Name()) && !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	for id := range s.preloaded {
		if !seen[id] {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids, nil
}
