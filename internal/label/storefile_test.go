package label

import (
	"os"
	"path/filepath"
	"testing"
)

// A preloaded file:// path that reaches a file in the store directory
// through a symbolic link is that file as much as a path in the directory
// is: the service reads the link's target, and a caller writing or
// deleting the store's key or certificate of that name replaces or removes
// it. StoreID names the store's id for it, whether the target exists yet
// or not, and however the path gets there.
func TestStoreIDFollowsLinksToTheStoresFiles(t *testing.T) {
	root := t.TempDir()
	store, elsewhere := filepath.Join(root, "store"), filepath.Join(root, "etc")
	for _, d := range []string{store, elsewhere} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(store, "factory.key"), []byte("key"), 0o600); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{
		"device-id.key": filepath.Join(store, "factory.key"), // the file
		"rel.key":       "../store/factory.key",
		"chain.key":     "device-id.key",
		"later-id.key":  filepath.Join(store, "later.key"), // a file not made yet
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(elsewhere, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(store, filepath.Join(root, "storelink")); err != nil {
		t.Fatal(err)
	}
	none := func(string) (string, bool) { return "", false }
	for _, tc := range []struct{ path, want string }{
		{filepath.Join(store, "factory.key"), "factory"},
		{filepath.Join(root, "storelink", "factory.key"), "factory"},
		{filepath.Join(elsewhere, "device-id.key"), "factory"},
		{filepath.Join(elsewhere, "rel.key"), "factory"},
		{filepath.Join(elsewhere, "chain.key"), "factory"},
		{filepath.Join(elsewhere, "later-id.key"), "later"},
	} {
		if got, ok := StoreID(store, tc.path, ".key", none); !ok || got != tc.want {
			t.Errorf("StoreID(%s) = %q, %v; want %q", tc.path, got, ok, tc.want)
		}
	}
	if got, ok := StoreID(store, filepath.Join(elsewhere, "other.key"), ".key", none); ok {
		t.Errorf("StoreID of a file outside the store = %q; want none", got)
	}
}
