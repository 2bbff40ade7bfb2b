package tpm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLinkNamesWhatIsMissing(t *testing.T) {
	store := t.TempDir()
	os.WriteFile(filepath.Join(store, "tpm2_pkcs11.sqlite3"), nil, 0o600)
	blobs := t.TempDir()
	for _, c := range []struct {
		name string
		opt  LinkOptions
		want string
	}{
		{"NoStore", LinkOptions{Token: "t", PIN: []byte("1")}, "--store DIR"},
		{"NoToken", LinkOptions{Store: store, PIN: []byte("1")}, "--token LABEL"},
		{"NoPIN", LinkOptions{Store: store, Token: "t"}, "--pin-file FILE"},
		{"NotAStore", LinkOptions{Store: t.TempDir(), Token: "t", PIN: []byte("1")}, "tpm2_ptool init --primary-handle 0x81000001"},
		{"NoBlobs", LinkOptions{Store: store, Token: "t", PIN: []byte("secret-pin"), BlobDir: blobs}, "ldevid create --blobs"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := LinkLDevID(context.Background(), c.opt)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("LinkLDevID = %v; want %q", err, c.want)
			}
			if strings.Contains(err.Error(), "secret-pin") {
				t.Fatalf("the PIN reached the error: %v", err)
			}
		})
	}
}
