package modrt

import (
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/edgev2/edgev2/modrt/modspec"
)

// specCache keeps the parsed spec file of each module, so that a list
// (edgeAgent polls it every few seconds) does not read and parse every
// file each time. The write paths (saveSpec, Remove) forget a module's
// entry; an entry is also used only while its file is the same one, of the
// same size and modification time, as when it was parsed, so a file
// changed behind the service's back is read again.
type specCache struct {
	// settle is how long after its last change a file must be before its
	// parse is kept: a change within the file system's timestamp tick of
	// the read would otherwise go unseen. NewService sets specSettle.
	settle  time.Duration
	mu      sync.Mutex
	entries map[string]specEntry
}

type specEntry struct {
	spec *modspec.Spec
	file os.FileInfo
}

// sameFile reports whether a and b describe the same, unchanged file: same
// inode, size, modification and change time (the change time moves with
// every write and cannot be set back, unlike the modification time).
func sameFile(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime()) && changeTime(a).Equal(changeTime(b))
}

func changeTime(fi os.FileInfo) time.Time {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return time.Time{}
	}
	return time.Unix(int64(st.Ctim.Sec), int64(st.Ctim.Nsec)) // int32 on 32-bit (armhf)
}

// load returns module name's spec from path, parsed; nil if there is none
// or it does not parse.
func (c *specCache) load(path, name string) *modspec.Spec {
	fi, err := os.Stat(path)
	if err != nil {
		c.forget(name)
		return nil
	}
	c.mu.Lock()
	e, ok := c.entries[name]
	c.mu.Unlock()
	if ok && sameFile(e.file, fi) {
		return e.spec
	}
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	// The stat of the open file is what the data read belongs to.
	if fi, err = f.Stat(); err != nil {
		return nil
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil
	}
	spec, err := modspec.ParseSpec(data)
	if err != nil {
		return nil
	}
	if time.Since(changeTime(fi)) >= c.settle {
		c.mu.Lock()
		if c.entries == nil {
			c.entries = map[string]specEntry{}
		}
		c.entries[name] = specEntry{spec: spec, file: fi}
		c.mu.Unlock()
	}
	return spec
}

// specSettle is specCache.settle in the service: above the coarsest
// timestamp granularity of the file systems a state directory lives on.
const specSettle = 2 * time.Second

// forget drops name's entry; the next load reads the file.
func (c *specCache) forget(name string) {
	c.mu.Lock()
	delete(c.entries, name)
	c.mu.Unlock()
}
