package keys

import (
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/atomicfile"
	"github.com/edgev2/edgev2/internal/credential"
	"github.com/edgev2/edgev2/internal/label"
)

// FileEngine keeps keys as PEM files (0600) in one directory. File names are
// derived from ids by escaping (or hashing, for long ids), so no id can name a
// path outside the directory; the id itself is recorded inside the file.
type FileEngine struct {
	dir string
}

const (
	pemSymmetric = "EDGEV2 SYMMETRIC KEY"
	pemPrivate   = "PRIVATE KEY"
	hdrID        = "Edgev2-Id"
	hdrUsage     = "Edgev2-Usage"
	hdrType      = "Edgev2-Type"   // asymmetric keys: ec-p256, rsa-2048...
	hdrPublic    = "Edgev2-Public" // asymmetric keys: base64 DER SubjectPublicKeyInfo
	keySuffix    = ".key"
)

// OpenFileEngine uses dir (created 0700 if missing) as the key store.
func OpenFileEngine(dir string) (*FileEngine, error) {
	if dir == "" {
		return nil, errors.New("no key directory configured")
	}
	if err := atomicfile.PrivateDir(dir); err != nil {
		return nil, fmt.Errorf("key directory: %w", err)
	}
	return &FileEngine{dir: dir}, nil
}

func (e *FileEngine) Name() string { return "file" }
func (e *FileEngine) Close() error { return nil }

// path maps an id to its file. Escaped names keep the store readable; ids
// whose escaped form would exceed NAME_MAX are hashed instead.
func (e *FileEngine) path(id string) string {
	return filepath.Join(e.dir, label.StoreName(id)+keySuffix)
}

func (e *FileEngine) Generate(ctx context.Context, id string, spec Spec) (Handle, error) {
	var secret any
	var err error
	switch {
	case spec.Type == Symmetric:
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("generate key %q: %w", id, err)
		}
		secret = b
	case spec.Type == ECP256:
		secret, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case spec.Type == ECP384:
		secret, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case spec.Type.IsRSA():
		secret, err = rsa.GenerateKey(rand.Reader, spec.Type.RSABits())
	default:
		return nil, fault.New(fault.InvalidArgs, "the file engine cannot make keys of type %q", spec.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("generate %s key %q: %w", spec.Type, id, err)
	}
	return e.store(id, spec, secret)
}

func (e *FileEngine) Import(ctx context.Context, id string, spec Spec, value []byte) (Handle, error) {
	if spec.Type != Symmetric {
		return nil, fault.New(fault.InvalidArgs, "only symmetric keys can be imported, not %q", spec.Type)
	}
	return e.store(id, spec, append([]byte(nil), value...))
}

func (e *FileEngine) store(id string, spec Spec, secret any) (Handle, error) {
	block, err := encodeKey(id, spec, secret)
	if err != nil {
		return nil, err
	}
	p := e.path(id)
	if err := atomicfile.Create(p, pem.EncodeToMemory(block), 0o600); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fault.New(fault.AlreadyExists, "key %q already exists", id)
		}
		return nil, fmt.Errorf("store key %q: %w", id, err)
	}
	return newFileHandle(id, p, spec, secret, false)
}

func encodeKey(id string, spec Spec, secret any) (*pem.Block, error) {
	hdr := map[string]string{hdrID: hex.EncodeToString([]byte(id))}
	if b, ok := secret.([]byte); ok {
		hdr[hdrUsage] = string(spec.Usage)
		return &pem.Block{Type: pemSymmetric, Headers: hdr, Bytes: b}, nil
	}
	der, err := x509.MarshalPKCS8PrivateKey(secret)
	if err != nil {
		return nil, fmt.Errorf("encode key %q: %w", id, err)
	}
	// The type and public key in the headers let listings describe the key
	// without parsing the private key.
	t, err := typeOfPrivate(secret)
	if err != nil {
		return nil, fmt.Errorf("encode key %q: %w", id, err)
	}
	pub, err := x509.MarshalPKIXPublicKey(secret.(crypto.Signer).Public())
	if err != nil {
		return nil, fmt.Errorf("encode key %q: %w", id, err)
	}
	hdr[hdrType] = string(t)
	hdr[hdrPublic] = base64.StdEncoding.EncodeToString(pub)
	return &pem.Block{Type: pemPrivate, Headers: hdr, Bytes: der}, nil
}

func (e *FileEngine) Open(ctx context.Context, id string) (Handle, error) {
	p := e.path(id)
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fault.New(fault.NotFound, "key %q not found", id)
	}
	if err != nil {
		return nil, fmt.Errorf("read key %q: %w", id, err)
	}
	storedID, h, err := decodeKeyFile(data, p, false)
	if err != nil {
		return nil, fmt.Errorf("key %q: %w", id, err)
	}
	if storedID != id { // a hash collision or a hand-edited store
		return nil, fault.New(fault.NotFound, "key %q not found", id)
	}
	// What listings show must be the key that signs.
	if _, hdr, ok := pemHeaders(data); ok && hdr[hdrPublic] != "" {
		info := h.Info()
		der, err := x509.MarshalPKIXPublicKey(info.Public)
		if err != nil || hdr[hdrPublic] != base64.StdEncoding.EncodeToString(der) || hdr[hdrType] != string(info.Type) {
			return nil, fmt.Errorf("key %q: %s: the public key in the file's header does not match its private key", id, p)
		}
	}
	return h, nil
}

// Describe implements Describer: the key's type and public key from the
// file's headers, without decoding or parsing the private key. Files
// written before the headers existed are parsed in full.
func (e *FileEngine) Describe(ctx context.Context, id string) (Info, error) {
	p := e.path(id)
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return Info{}, fault.New(fault.NotFound, "key %q not found", id)
	}
	if err != nil {
		return Info{}, fmt.Errorf("read key %q: %w", id, err)
	}
	defer clear(data)
	typ, hdr, ok := pemHeaders(data)
	if !ok {
		return Info{}, fmt.Errorf("key %q: %s is not a PEM key file", id, p)
	}
	raw, err := hex.DecodeString(hdr[hdrID])
	if err != nil || string(raw) != id {
		return Info{}, fault.New(fault.NotFound, "key %q not found", id)
	}
	info := Info{ID: id, Location: p}
	switch {
	case typ == pemSymmetric:
		info.Type, info.Usage = Symmetric, Usage(hdr[hdrUsage])
		if info.Usage != UsageSign && info.Usage != UsageEncrypt && info.Usage != UsageDerive {
			return Info{}, fmt.Errorf("key %q: %s: unknown usage %q", id, p, info.Usage)
		}
		return info, nil
	case typ == pemPrivate && hdr[hdrPublic] != "":
		t, err := ParseType(hdr[hdrType])
		if err != nil || t == Symmetric {
			return Info{}, fmt.Errorf("key %q: %s: bad %s header", id, p, hdrType)
		}
		der, err := base64.StdEncoding.DecodeString(hdr[hdrPublic])
		if err != nil {
			return Info{}, fmt.Errorf("key %q: %s: bad %s header", id, p, hdrPublic)
		}
		pub, err := x509.ParsePKIXPublicKey(der)
		if err != nil {
			return Info{}, fmt.Errorf("key %q: %s: bad %s header: %w", id, p, hdrPublic, err)
		}
		info.Type, info.Public, info.PublicDER = t, pub, der
		return info, nil
	}
	h, err := e.Open(ctx, id)
	if err != nil {
		return Info{}, err
	}
	return h.Info(), nil
}

// pemHeaders reads the type and headers of the PEM block data starts with,
// without decoding its body.
func pemHeaders(data []byte) (typ string, hdr map[string]string, ok bool) {
	line, rest, _ := strings.Cut(string(data[:min(len(data), 4096)]), "\n")
	if !strings.HasPrefix(line, "-----BEGIN ") || !strings.HasSuffix(line, "-----") {
		return "", nil, false
	}
	typ = strings.TrimSuffix(strings.TrimPrefix(line, "-----BEGIN "), "-----")
	hdr = map[string]string{}
	for {
		line, rest, _ = strings.Cut(rest, "\n")
		k, v, found := strings.Cut(strings.TrimRight(line, "\r"), ": ")
		if !found {
			return typ, hdr, true
		}
		hdr[k] = v
	}
}

// decodeKeyFile parses a stored key file, or for preloaded keys also plain
// PEM private keys (PKCS#8, SEC 1, PKCS#1) and raw symmetric key bytes.
func decodeKeyFile(data []byte, path string, preloaded bool) (id string, h Handle, err error) {
	block, _ := pem.Decode(data)
	if block == nil {
		if !preloaded {
			return "", nil, fmt.Errorf("%s is not a PEM key file", path)
		}
		if len(data) == 0 {
			return "", nil, fmt.Errorf("%s is empty", path)
		}
		h, err := newFileHandle("", path, Spec{Type: Symmetric, Usage: UsageSign}, data, true)
		return "", h, err
	}
	if v, ok := block.Headers[hdrID]; ok {
		raw, err := hex.DecodeString(v)
		if err != nil {
			return "", nil, fmt.Errorf("%s: bad %s header", path, hdrID)
		}
		id = string(raw)
	}
	var secret any
	spec := Spec{}
	switch block.Type {
	case pemSymmetric:
		secret = block.Bytes
		spec = Spec{Type: Symmetric, Usage: Usage(block.Headers[hdrUsage])}
		if spec.Usage != UsageSign && spec.Usage != UsageEncrypt && spec.Usage != UsageDerive {
			return "", nil, fmt.Errorf("%s: unknown usage %q", path, spec.Usage)
		}
	case "PRIVATE KEY":
		secret, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		secret, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		secret, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return "", nil, fmt.Errorf("%s: unsupported PEM block %q", path, block.Type)
	}
	if err != nil {
		return "", nil, fmt.Errorf("%s: parse private key: %w", path, err)
	}
	if spec.Type == "" {
		if spec.Type, err = typeOfPrivate(secret); err != nil {
			return "", nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	h, err = newFileHandle(id, path, spec, secret, preloaded)
	return id, h, err
}

func typeOfPrivate(k any) (Type, error) {
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			return ECP256, nil
		case elliptic.P384():
			return ECP384, nil
		}
		return "", fmt.Errorf("unsupported curve %s", k.Curve.Params().Name)
	case *rsa.PrivateKey:
		switch k.N.BitLen() {
		case 2048:
			return RSA2048, nil
		case 3072:
			return RSA3072, nil
		case 4096:
			return RSA4096, nil
		}
		return "", fmt.Errorf("unsupported RSA size %d", k.N.BitLen())
	}
	return "", fmt.Errorf("unsupported private key type %T", k)
}

func (e *FileEngine) Delete(ctx context.Context, id string) error {
	if _, err := e.Open(ctx, id); err != nil {
		return err
	}
	if err := os.Remove(e.path(id)); err != nil {
		return fmt.Errorf("delete key %q: %w", id, err)
	}
	return atomicfile.SyncDir(e.dir)
}

// Move writes the key under its new id (atomically replacing any key there)
// and then removes the old file. A crash in between leaves both names holding
// the same key, never neither.
func (e *FileEngine) Move(ctx context.Context, from, to string) error {
	h, err := e.Open(ctx, from)
	if err != nil {
		return err
	}
	fh := h.(*fileHandle)
	block, err := encodeKey(to, Spec{Type: fh.info.Type, Usage: fh.info.Usage}, fh.secret)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(e.path(to), pem.EncodeToMemory(block), 0o600); err != nil {
		return fmt.Errorf("move key %q to %q: %w", from, to, err)
	}
	if err := os.Remove(e.path(from)); err != nil {
		return fmt.Errorf("move key %q to %q: remove old: %w", from, to, err)
	}
	return atomicfile.SyncDir(e.dir)
}

func (e *FileEngine) List(ctx context.Context) ([]string, error) {
	ents, err := os.ReadDir(e.dir)
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	var ids []string
	for _, ent := range ents {
		if !ent.Type().IsRegular() || !strings.HasSuffix(ent.Name(), keySuffix) || strings.HasPrefix(ent.Name(), ".") {
			continue
		}
		// The id is the file's name unescaped; only hashed names (long
		// ids) need the file's header. No private key is read.
		p := filepath.Join(e.dir, ent.Name())
		name := strings.TrimSuffix(ent.Name(), keySuffix)
		id, ok := label.Unescape(name)
		if strings.HasPrefix(name, "h-") {
			id, ok = headerID(p)
		}
		if !ok || ValidateID(id) != nil || e.path(id) != p {
			continue
		}
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids, nil
}

// IDOfFile is the id under which the engine serves the file at path
// (which need not exist yet), by label.StoreID.
func (e *FileEngine) IDOfFile(path string) (string, bool) {
	return label.StoreID(e.dir, path, keySuffix, headerID)
}

// headerID reads the id recorded in a key file's header.
func headerID(path string) (string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	buf := make([]byte, 2048) // an id is at most 255 bytes, 510 in hex
	n, _ := io.ReadFull(f, buf)
	_, hdr, ok := pemHeaders(buf[:n])
	if !ok {
		return "", false
	}
	raw, err := hex.DecodeString(hdr[hdrID])
	return string(raw), err == nil && len(raw) > 0
}

// LoadKeyFile opens a preloaded key from a file: a PEM private key, a key
// file written by the file engine, or raw bytes (a symmetric sign key).
func LoadKeyFile(id, path string) (Handle, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("preloaded key %q: %w", id, err)
	}
	_, h, err := decodeKeyFile(data, path, true)
	if err != nil {
		return nil, fmt.Errorf("preloaded key %q: %w", id, err)
	}
	fh := h.(*fileHandle)
	fh.info.ID = id
	return fh, nil
}

// LoadKeyCredential opens a preloaded key from a systemd credential
// (preloaded_keys value "credential:NAME"), in any form LoadKeyFile takes.
func LoadKeyCredential(id, name string) (Handle, error) {
	data, err := credential.Read(name)
	if err != nil {
		return nil, fmt.Errorf("preloaded key %q: %w", id, err)
	}
	_, h, err := decodeKeyFile(data, credential.Scheme+name, true)
	if err != nil {
		return nil, fmt.Errorf("preloaded key %q: %w", id, err)
	}
	fh := h.(*fileHandle)
	fh.info.ID = id
	return fh, nil
}

type fileHandle struct {
	info   Info
	secret any // []byte, *ecdsa.PrivateKey or *rsa.PrivateKey
	aead   cipher.AEAD
}

func newFileHandle(id, path string, spec Spec, secret any, preloaded bool) (*fileHandle, error) {
	h := &fileHandle{
		info:   Info{ID: id, Type: spec.Type, Usage: spec.Usage, Location: path, Preloaded: preloaded},
		secret: secret,
	}
	switch k := secret.(type) {
	case *ecdsa.PrivateKey:
		h.info.Public = &k.PublicKey
	case *rsa.PrivateKey:
		h.info.Public = &k.PublicKey
	case []byte:
		if spec.Usage == UsageEncrypt {
			if len(k) != 32 {
				return nil, fmt.Errorf("AES-256 key must be 32 bytes, %s holds %d", path, len(k))
			}
			block, err := aes.NewCipher(k)
			if err != nil {
				return nil, err
			}
			if h.aead, err = cipher.NewGCM(block); err != nil {
				return nil, err
			}
		}
	}
	return h, nil
}

func (h *fileHandle) Info() Info { return h.info }

func (h *fileHandle) HMACSHA256(ctx context.Context, data []byte) ([]byte, error) {
	k, ok := h.secret.([]byte)
	if !ok || h.info.Usage == UsageEncrypt {
		return nil, misuse(h.info, "HMAC-SHA256")
	}
	m := hmac.New(sha256.New, k)
	m.Write(data)
	return m.Sum(nil), nil
}

func (h *fileHandle) SignDigest(ctx context.Context, digest []byte, hash crypto.Hash, pss bool) ([]byte, error) {
	switch k := h.secret.(type) {
	case *ecdsa.PrivateKey:
		return ecdsa.SignASN1(rand.Reader, k, digest)
	case *rsa.PrivateKey:
		if pss {
			return rsa.SignPSS(rand.Reader, k, hash, digest, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		}
		return rsa.SignPKCS1v15(rand.Reader, k, hash, digest)
	}
	return nil, misuse(h.info, "a digest signature")
}

func (h *fileHandle) DecryptOAEP(ctx context.Context, ciphertext []byte) ([]byte, error) {
	k, ok := h.secret.(*rsa.PrivateKey)
	if !ok {
		return nil, misuse(h.info, "RSA-OAEP")
	}
	pt, err := rsa.DecryptOAEP(sha256.New(), nil, k, ciphertext, nil)
	if err != nil {
		return nil, fault.New(fault.InvalidArgs, "key %q: RSA-OAEP decryption failed (wrong key or corrupt ciphertext)", h.info.ID)
	}
	return pt, nil
}

func (h *fileHandle) SealGCM(ctx context.Context, iv, aad, plaintext []byte) ([]byte, error) {
	if h.aead == nil {
		return nil, misuse(h.info, "AES-256-GCM")
	}
	return h.aead.Seal(nil, iv, plaintext, aad), nil
}

func (h *fileHandle) OpenGCM(ctx context.Context, iv, aad, ciphertext []byte) ([]byte, error) {
	if h.aead == nil {
		return nil, misuse(h.info, "AES-256-GCM")
	}
	pt, err := h.aead.Open(nil, iv, ciphertext, aad)
	if err != nil {
		return nil, fault.New(fault.InvalidArgs, "key %q: AES-256-GCM authentication failed (wrong key, iv, aad or tampered ciphertext)", h.info.ID)
	}
	return pt, nil
}

func misuse(info Info, op string) error {
	kind := string(info.Type)
	if info.Type == Symmetric {
		kind = "symmetric (" + string(info.Usage) + ")"
	}
	return fault.New(fault.InvalidArgs, "key %q of type %s cannot do %s", info.ID, kind, op)
}
