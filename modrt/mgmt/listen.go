package mgmt

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"

	"github.com/edgev2/edgev2/internal/unixsock"
)

// ListenUnix listens on a Unix socket at path with the given mode. It
// makes the parent directory (0755) if missing and replaces a stale socket
// left by a previous run; it refuses to replace anything that is not a
// socket. The directory is bound into the agent module, which may write
// it: the socket is bound and its mode set through a descriptor of the
// directory, so nothing the agent puts there is ever followed.
func ListenUnix(path string, mode os.FileMode) (net.Listener, error) {
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("make socket directory: %w", err)
		}
		// 0755 whatever the umask (the unit's is 0077): edgeAgent need
		// not run as root to reach the socket. Only a directory made
		// here: a configured one keeps its mode.
		if err := os.Chmod(dir, 0o755); err != nil {
			return nil, fmt.Errorf("make socket directory: %w", err)
		}
	}
	return unixsock.Listen(dir, filepath.Base(path), mode)
}
