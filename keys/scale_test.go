package keys

import (
	"bytes"
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgev2/edgev2/internal/lru"
)

// TestFileListingReadsNoPrivateKey: ListKeys takes ids from file names (and
// the header of hashed long names); Describe takes the type and public key
// from the headers. A key file whose private part is unreadable is still
// listed and described — proof neither parsed it — while Open refuses it.
func TestFileListingReadsNoPrivateKey(t *testing.T) {
	svc, _ := newFileService(t)
	e := svc.engine.(*FileEngine)
	ctx := context.Background()
	long := strings.Repeat("long-id-", 30) // escaped form > 200 bytes: a hashed file name
	for _, c := range []struct {
		id   string
		spec Spec
	}{{"ec", Spec{Type: ECP256}}, {"rsa", Spec{Type: RSA2048}}, {"mac", Spec{Type: Symmetric, Usage: UsageSign}}, {long, Spec{Type: ECP384}}} {
		if _, err := e.Generate(ctx, c.id, c.spec); err != nil {
			t.Fatal(err)
		}
	}
	opened, err := e.Open(ctx, "ec")
	if err != nil {
		t.Fatal(err)
	}
	// Corrupt the private part of "ec" and the long key, keeping headers.
	for _, id := range []string{"ec", long} {
		p := e.path(id)
		data, _ := os.ReadFile(p)
		i := bytes.Index(data, []byte("\n\n"))
		if i < 0 {
			t.Fatalf("%s has no header/body separator:\n%s", p, data)
		}
		os.WriteFile(p, append(data[:i+2], []byte("bm90IGEga2V5\n-----END PRIVATE KEY-----\n")...), 0o600)
	}
	ids, err := svc.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(ids, ",") != strings.Join([]string{"ec", long, "mac", "rsa"}, ",") {
		t.Fatalf("List = %q", ids)
	}
	info, err := svc.Get(ctx, "ec")
	if err != nil || info.Type != ECP256 || info.Public == nil {
		t.Fatalf("Get of a key with a corrupt private part = %+v, %v; want its type and public key from the header", info, err)
	}
	want, _ := x509.MarshalPKIXPublicKey(opened.Info().Public)
	if !bytes.Equal(info.PublicDER, want) {
		t.Fatal("the header's public key differs from the key's")
	}
	if info, err := svc.Get(ctx, long); err != nil || info.Type != ECP384 {
		t.Fatalf("Get of the long-id key = %+v, %v", info, err)
	}
	if info, err := svc.Get(ctx, "mac"); err != nil || info.Type != Symmetric || info.Usage != UsageSign {
		t.Fatalf("Get of the symmetric key = %+v, %v", info, err)
	}
	if _, err := e.Open(ctx, "ec"); err == nil {
		t.Fatal("Open of a corrupt private key succeeded")
	}
	if n := svc.CachedHandles(); n != 0 {
		t.Fatalf("listing and describing cached %d handles; want none", n)
	}
}

// TestFileKeyWhoseHeaderLiesIsRefused: a public key in the header that is
// not the private key's would make the listed PublicKey a lie; Open refuses.
func TestFileKeyWhoseHeaderLiesIsRefused(t *testing.T) {
	svc, _ := newFileService(t)
	e := svc.engine.(*FileEngine)
	ctx := context.Background()
	for _, id := range []string{"a", "b"} {
		if _, err := e.Generate(ctx, id, Spec{Type: ECP256}); err != nil {
			t.Fatal(err)
		}
	}
	hdrOf := func(id string) string {
		data, _ := os.ReadFile(e.path(id))
		_, hdr, _ := pemHeaders(data)
		return hdr[hdrPublic]
	}
	data, _ := os.ReadFile(e.path("a"))
	os.WriteFile(e.path("a"), bytes.Replace(data, []byte(hdrOf("a")), []byte(hdrOf("b")), 1), 0o600)
	if _, err := svc.Sign(ctx, "a", MechECDSASHA256, []byte("x")); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("Sign with a key whose header names another public key = %v; want a refusal", err)
	}
}

// TestHandleCacheIsBoundedLRU: using more keys than the cache holds keeps
// at most its size in memory, evicting the least recently used; the key
// used last stays.
func TestHandleCacheIsBoundedLRU(t *testing.T) {
	svc, _ := newFileService(t)
	svc.handles = lru.New[string, Handle](4)
	ctx := context.Background()
	ids := []string{"k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9"}
	for _, id := range ids {
		if _, _, err := svc.CreateKey(ctx, id, UsageSign, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range ids {
		if _, err := svc.Sign(ctx, id, MechHMACSHA256, []byte("x")); err != nil {
			t.Fatal(err)
		}
		if n := svc.CachedHandles(); n > 4 {
			t.Fatalf("%d handles cached after signing with %s; want at most 4", n, id)
		}
	}
	svc.Sign(ctx, "k6", MechHMACSHA256, []byte("x")) // k6 is now the most recent; k7 the least
	svc.Sign(ctx, "k0", MechHMACSHA256, []byte("x")) // evicts k7
	svc.mu.Lock()
	_, k6 := svc.handles.Get("k6")
	_, k7 := svc.handles.Get("k7")
	svc.mu.Unlock()
	if !k6 || k7 {
		t.Fatalf("after using k6 then k0: k6 cached=%v (want true), k7 cached=%v (want false, least recently used)", k6, k7)
	}
	// Deleting a cached key forgets its handle.
	if err := svc.Delete(ctx, "k0"); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Sign(ctx, "k0", MechHMACSHA256, []byte("x")); err == nil {
		t.Fatal("a deleted key still signs from the cache")
	}
	if _, err := os.Stat(filepath.Join(svc.engine.(*FileEngine).dir, "k0.key")); !os.IsNotExist(err) {
		t.Fatalf("k0.key still exists: %v", err)
	}
}

// TestFileEngineIDOfFile: the id the store would serve a path as, for any
// name of its directory and for files that do not exist yet; nothing for a
// path the engine never serves.
func TestFileEngineIDOfFile(t *testing.T) {
	svc, _ := newFileService(t)
	e := svc.engine.(*FileEngine)
	long := strings.Repeat("long-id-", 30)
	if _, err := e.Generate(context.Background(), long, Spec{Type: ECP256}); err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	link := filepath.Join(other, "store")
	if err := os.Symlink(e.dir, link); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path, want string
	}{
		{filepath.Join(e.dir, "factory.key"), "factory"},
		{filepath.Join(e.dir, "device_2did.key"), "device-id"},
		{filepath.Join(e.dir, "sub", "..", "factory.key"), "factory"},
		{filepath.Join(link, "factory.key"), "factory"},
		{e.path(long), long},
		{filepath.Join(e.dir, "device-id.key"), ""}, // not canonical: no id's file
		{filepath.Join(e.dir, "factory.pem"), ""},
		{filepath.Join(e.dir, ".tmp-factory.key"), ""},
		{filepath.Join(e.dir, "h-00.key"), ""}, // hashed, no header to name it
		{filepath.Join(other, "factory.key"), ""},
		{filepath.Join(e.dir, "sub", "factory.key"), ""},
	}
	for _, tt := range tests {
		id, ok := e.IDOfFile(tt.path)
		if id != tt.want || ok != (tt.want != "") {
			t.Errorf("IDOfFile(%s) = %q, %v; want %q", tt.path, id, ok, tt.want)
		}
	}
}
