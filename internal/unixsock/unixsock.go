// Package unixsock listens on Unix sockets in directories that someone less
// trusted may write (a module's socket directory), without following a path
// they could have swapped: every step works on a descriptor of the directory.
package unixsock

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrNotSocket is returned when the socket's name is taken by something
// that is neither a socket nor a symbolic link (which are replaced).
var ErrNotSocket = errors.New("exists and is not a socket")

// Listen listens on dir/name with the given permission bits. dir's own
// path must be trusted (its parents writable only by the caller); its
// contents need not be. A socket or symbolic link at dir/name (a stale
// socket, or a planted link) is removed without being followed; anything
// else is left alone and ErrNotSocket returned. The socket is bound and
// its mode set through descriptors, so a concurrent swap of dir/name can
// never redirect the bind or the chmod to another file. Closing the
// listener removes the socket (if dir/name is still a socket).
func Listen(dir, name string, mode os.FileMode) (net.Listener, error) {
	if name == "" || name == "." || name == ".." || containsSlash(name) {
		return nil, fmt.Errorf("socket name %q is not a plain file name", name)
	}
	dirfd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_PATH, 0)
	if err != nil {
		return nil, fmt.Errorf("open socket directory %s: %w", dir, err)
	}
	l, err := listenAt(dirfd, dir, name, mode)
	if err != nil {
		unix.Close(dirfd)
		return nil, err
	}
	return l, nil
}

func listenAt(dirfd int, dir, name string, mode os.FileMode) (net.Listener, error) {
	// bind(2) creates the name in exactly this directory: the magic link
	// resolves to the open directory, and bind never follows a final link.
	bindPath := "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + name
	var ul *net.UnixListener
	for attempt := 0; ; attempt++ {
		if err := removeStale(dirfd, dir, name); err != nil {
			return nil, err
		}
		var err error
		ul, err = net.ListenUnix("unix", &net.UnixAddr{Name: bindPath, Net: "unix"})
		if err == nil {
			break
		}
		// Something took the name between the removal and the bind.
		if !errors.Is(err, unix.EADDRINUSE) || attempt >= 3 {
			return nil, fmt.Errorf("listen on %s/%s: %w", dir, name, err)
		}
	}
	// Go would unlink bindPath on Close, by then perhaps another directory.
	ul.SetUnlinkOnClose(false)
	if err := chmodSocket(dirfd, name, mode); err != nil {
		ul.Close()
		unlinkSocket(dirfd, name)
		return nil, fmt.Errorf("set mode of %s/%s: %w", dir, name, err)
	}
	return &listener{UnixListener: ul, dirfd: dirfd, name: name}, nil
}

// removeStale unlinks a socket or symbolic link at name, without following it.
func removeStale(dirfd int, dir, name string) error {
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stat %s/%s: %w", dir, name, err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFSOCK, unix.S_IFLNK:
		if err := unix.Unlinkat(dirfd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("remove stale %s/%s: %w", dir, name, err)
		}
		return nil
	}
	return fmt.Errorf("listen on %s/%s: it %w", dir, name, ErrNotSocket)
}

// chmodSocket sets the mode of the socket now at name. It opens the name
// without following a link and refuses anything but a socket, then
// changes the mode of that very inode through its descriptor.
func chmodSocket(dirfd int, name string, mode os.FileMode) error {
	fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return fmt.Errorf("the socket was replaced: %w", ErrNotSocket)
	}
	// fchmod does not work on O_PATH descriptors; chmod of the magic link does,
	// and changes exactly the inode the descriptor holds.
	return unix.Fchmodat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), uint32(mode.Perm()), 0)
}

func unlinkSocket(dirfd int, name string) {
	var st unix.Stat_t
	if unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFSOCK {
		unix.Unlinkat(dirfd, name, 0)
	}
}

type listener struct {
	*net.UnixListener
	dirfd int
	name  string
	once  sync.Once
}

func (l *listener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() {
		unlinkSocket(l.dirfd, l.name)
		unix.Close(l.dirfd)
	})
	return err
}

// Abandon closes the listener but leaves the socket file behind, as a
// crashed process would (for tests of stale sockets).
func Abandon(l net.Listener) {
	if ll, ok := l.(*listener); ok {
		ll.UnixListener.Close()
		ll.once.Do(func() { unix.Close(ll.dirfd) })
		return
	}
	l.Close()
}

func containsSlash(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return true
		}
	}
	return false
}
