package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgev2/edgev2/internal/credential"
)

// apply killed (-9, power loss) between writing a clear credential's
// temporary file and renaming it leaves ".tmp-edgev2.…" in /etc/credstore:
// a clear secret the store's clean-up (edgev2.* only) never sees. The next
// apply must remove it like any clear credential the configuration no
// longer has.
func TestApplyRemovesClearTemporaryLeftByAKilledApply(t *testing.T) {
	root, cfg, o := appliedSealed(t, sealNoneConfig)
	// What atomicfile.WriteFile leaves when killed before its rename.
	leftover := filepath.Join(root, credential.ClearStoreDir, ".tmp-edgev2.certd.est-password-1234567")
	if err := os.WriteFile(leftover, []byte("est-basic-password-xyz"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(cfg, []byte(sealedConfig("est-basic-password-xyz")), 0o600)
	if _, err := apply(context.Background(), compileSuperConfig, o); err != nil {
		t.Fatal(err)
	}
	if hits := grepTree(t, root, sealedSecrets); len(hits) > 0 {
		t.Fatalf("secrets in clear after apply:\n%s", strings.Join(hits, "\n"))
	}
}
