package certs

import (
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
	// aliases are the stored ids whose files are preloaded certificates'
	// (a preloaded file:// path in dir) → the preloaded id: never written,
	// deleted or listed under that name.
	aliases map[string]string
}

const certSuffix = ".pem"

// OpenStore uses dir (created 0700) for stored certificates.
func OpenStore(dir string, preloaded map[string]string) (*Store, error) {
	if err := atomicfile.PrivateDir(dir); err != nil {
		return nil, fmt.Errorf("certificate directory: %w", err)
	}
	if preloaded == nil {
		preloaded = map[string]string{}
	}
	s := &Store{dir: dir, preloaded: preloaded, aliases: map[string]string{}}
	for id, p := range preloaded {
		if name, ok := label.StoreID(dir, p, certSuffix, recordedID); ok && name != id {
			s.aliases[name] = id
		}
	}
	return s, nil
}

func (s *Store) path(id string) string {
	return filepath.Join(s.dir, label.StoreName(id)+certSuffix)
}

// IsPreloaded reports whether id comes from [preloaded_certs].
func (s *Store) IsPreloaded(id string) bool {
	_, ok := s.preloaded[id]
	return ok
}

// ReadOnly refuses to write or delete id when it is preloaded, or the
// stored name of a preloaded certificate's file.
func (s *Store) ReadOnly(id, instead string) error {
	if s.IsPreloaded(id) {
		return fault.New(fault.ReadOnly, "certificate %q is preloaded from the configuration; %s [preloaded_certs] instead", id, instead)
	}
	if pre, ok := s.aliases[id]; ok {
		return fault.New(fault.ReadOnly, "certificate %q is the file of preloaded certificate %q in certd's directory; %s [preloaded_certs] instead", id, pre, instead)
	}
	return nil
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
	if err := s.ReadOnly(id, "change"); err != nil {
		return err
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
	if err := s.ReadOnly(id, "remove it from"); err != nil {
		return err
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
		p := filepath.Join(s.dir, ent.Name())
		id, ok := recordedID(p)
		if !ok || s.path(id) != p || seen[id] || s.aliases[id] != "" {
			continue
		}
		seen[id] = true
		ids = append(ids, id)
	}
	for id := range s.preloaded {
		if !seen[id] {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// recordedID is the id a stored file's first line records.
func recordedID(path string) (string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	buf := make([]byte, 2*label.MaxIDLen+32)
	n, _ := f.Read(buf)
	first, _, _ := strings.Cut(string(buf[:n]), "\n")
	hexID, ok := strings.CutPrefix(first, "# edgev2-id ")
	if !ok {
		return "", false
	}
	raw, err := hex.DecodeString(hexID)
	return string(raw), err == nil
}
