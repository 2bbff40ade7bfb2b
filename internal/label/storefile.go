package label

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
)

// maxStoreName bounds an escaped id used as a file name; longer ones are
// hashed (NAME_MAX is 255 bytes, with room left for a suffix).
const maxStoreName = 200

// StoreName is the file name (before its suffix) a store of one file per
// id gives id: Escape(id), or "h-" and the SHA-256 of id when that is too
// long — such a file records its id itself.
func StoreName(id string) string {
	name := Escape(id)
	if len(name) > maxStoreName {
		sum := sha256.Sum256([]byte(id))
		name = "h-" + hex.EncodeToString(sum[:])
	}
	return name
}

// StoreID is the id whose file in the store directory dir path is (the
// file need not exist): path's directory must be dir — compared by device
// and inode, so a symlink or bind mount to it counts — and its name
// StoreName(id)+suffix. A symbolic link at path counts as its target, as
// opening path reads the target. recorded reads the id a hashed name's
// file records.
func StoreID(dir, path, suffix string, recorded func(path string) (string, bool)) (string, bool) {
	parent, name := filepath.Split(linkTarget(path))
	a, err := os.Stat(parent)
	if err != nil {
		return "", false
	}
	b, err := os.Stat(dir)
	if err != nil || !os.SameFile(a, b) {
		return "", false
	}
	base, ok := strings.CutSuffix(name, suffix)
	if !ok || strings.HasPrefix(name, ".") {
		return "", false
	}
	id, ok := Unescape(base)
	if strings.HasPrefix(base, "h-") {
		id, ok = recorded(path)
	}
	if !ok || ValidateID("id", id) != "" || StoreName(id) != base {
		return "", false
	}
	return id, true
}

// linkTarget is the file path names once the symbolic links at its end are
// followed, the target need not exist; path itself when it is no link.
func linkTarget(path string) string {
	for range 40 { // the kernel's limit
		fi, err := os.Lstat(path)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			break
		}
		target, err := os.Readlink(path)
		if err != nil {
			break
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(path), target)
		}
		path = target
	}
	return filepath.Clean(path)
}
