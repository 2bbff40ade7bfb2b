// Package atomicfile writes files so that a crash or kill -9 at any instant
// leaves either the old or the new content, never a torn file.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// WriteFile writes data to path atomically: a temporary file in the same
// directory, fsync, rename over path, fsync of the directory.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return writeFile(path, data, perm, -1, -1)
}

// WriteFileAs is WriteFile for a file owned by uid:gid. The temporary file
// is written 0600 by its creator, then given its owner and mode, and only
// then renamed: path never holds the new content under another owner or
// mode, whenever the writer dies.
func WriteFileAs(path string, data []byte, perm os.FileMode, uid, gid int) error {
	return writeFile(path, data, perm, uid, gid)
}

func writeFile(path string, data []byte, perm os.FileMode, uid, gid int) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)[:min(len(filepath.Base(path)), 32)]+"-*")
	if err != nil {
		return fmt.Errorf("create temporary file in %s: %w", dir, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if uid < 0 {
		if err := f.Chmod(perm); err != nil {
			return fmt.Errorf("chmod %s: %w", tmp, err)
		}
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if uid >= 0 {
		// After the write: until now only its creator could read it.
		// The chown clears set-id bits, so the mode comes after it.
		if err := f.Chown(uid, gid); err != nil {
			return fmt.Errorf("chown %s to %d:%d: %w", tmp, uid, gid, err)
		}
		if err := f.Chmod(perm); err != nil {
			return fmt.Errorf("chmod %s: %w", tmp, err)
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename into %s: %w", path, err)
	}
	ok = true
	return SyncDir(dir)
}

// Create writes data to path atomically only if path does not exist yet
// (link(2) fails with EEXIST otherwise); it returns an error wrapping os.ErrExist then.
func Create(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-new-*")
	if err != nil {
		return fmt.Errorf("create temporary file in %s: %w", dir, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Link(tmp, path); err != nil {
		return err
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a directory so a rename or unlink in it is durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// PrivateDir makes dir, or restricts it, to 0700 for files written by this
// package, and removes the temporary files a write cut short left there:
// the content they held was never acknowledged.
func PrivateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("restrict %s to 0700: %w", dir, err)
	}
	stale, _ := filepath.Glob(filepath.Join(dir, ".tmp-*"))
	for _, f := range stale {
		os.Remove(f)
	}
	return nil
}
