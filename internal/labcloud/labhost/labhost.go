// Package labhost gives each lab cloud its own loopback address and a host
// name that resolves to it, so it serves on :443 at a port-less name — the
// shape of a real Azure endpoint — beside any number of other instances.
//
// Linux routes all of 127.0.0.0/8 to lo, so every instance binds its own
// 127.77.x.y:443. The name resolves through an /etc/hosts line, because that
// is what every client consults first (glibc's getaddrinfo, which Node and
// the C/Python SDKs use, and Go's resolver, pure or cgo); a `.localhost`
// name (nss-myhostname) would only ever reach 127.0.0.1. The hosts file is
// also the registry of taken addresses: lines are edited under an flock,
// each carries its owner's pid and start time, a reaper child removes a
// process's lines when it exits (kill -9 included), and any reservation
// first sweeps lines whose owner is gone.
package labhost

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Port is where a real hub, DPS and EST endpoint listen.
const Port = 443

// Domain holds the names (".test" is reserved for testing, RFC 2606).
const Domain = "labcloud.test"

// marker tags the lines this package owns.
const marker = "# edgev2-labhost"

var (
	// hostsPath and lockPath are variables for this package's own tests.
	hostsPath = "/etc/hosts"
	lockPath  = "/run/lock/edgev2-labhost.lock"
)

// TB is the part of testing.TB Reserve uses.
type TB interface {
	Helper()
	Cleanup(func())
	Fatalf(format string, args ...any)
}

// Host is one reserved address and its name.
type Host struct {
	Name string     // e.g. "hub-12-34.labcloud.test" for 127.77.12.34
	IP   netip.Addr // 127.77.x.y
}

// Addr is "IP:443".
func (h Host) Addr() string { return netip.AddrPortFrom(h.IP, Port).String() }

// Reserve hands out a free loopback address with its name; listen on
// h.Addr() yourself, or use Listen to get the listener too. On t's cleanup
// it goes back to this process's pool (see below).
func Reserve(t TB) Host {
	t.Helper()
	h, ln := reserve(t)
	ln.Close()
	return h
}

// Listen is Reserve plus a listener on the reserved IP:443, bound before
// the address is handed out. The listener is closed on t's cleanup.
func Listen(t TB) (Host, net.Listener) {
	t.Helper()
	h, ln := reserve(t)
	t.Cleanup(func() { ln.Close() })
	return h, ln
}

// The hosts lines live as long as the process: Go's resolver caches
// /etc/hosts for up to 5 s, so a line added per test would cost each new
// name a 5 s wait in this process. Names are added in batches and reused by
// later tests of the same process once released; a reaper child removes
// this process's lines when it exits, however it exits (kill -9 included),
// and every reservation also sweeps lines whose owner is gone.
const batch = 8

var pool struct {
	sync.Mutex
	free   []Host
	reaper *exec.Cmd
}

func reserve(t TB) (Host, net.Listener) {
	t.Helper()
	h, ln, err := get()
	if err != nil {
		t.Fatalf("reserve a lab cloud host name: %v", err)
	}
	t.Cleanup(func() { put(h) })
	return h, ln
}

// get takes a free host from the pool, first adding a batch if it is empty.
func get() (Host, net.Listener, error) {
	pool.Lock()
	defer pool.Unlock()
	for {
		for len(pool.free) > 0 {
			h := pool.free[len(pool.free)-1]
			pool.free = pool.free[:len(pool.free)-1]
			ln, err := net.Listen("tcp", h.Addr())
			if err == nil {
				return h, ln, nil
			}
		}
		if pool.reaper == nil {
			r, err := startReaper()
			if err != nil {
				return Host{}, nil, err
			}
			pool.reaper = r
		}
		hosts, err := add(batch)
		if err != nil {
			return Host{}, nil, err
		}
		if err := waitResolvable(hosts[len(hosts)-1]); err != nil {
			return Host{}, nil, err
		}
		pool.free = append(pool.free, hosts...)
	}
}

func put(h Host) {
	pool.Lock()
	defer pool.Unlock()
	pool.free = append(pool.free, h)
}

// startReaper starts a child that removes this process's lines once this
// process is gone: it waits for EOF on a pipe only this process holds
// open, ignoring the signals a test run's Ctrl-C sends the process group.
func startReaper() (*exec.Cmd, error) {
	owner := fmt.Sprintf("%s pid=%d start=%s", marker, os.Getpid(), startTime(os.Getpid()))
	script := `trap '' INT TERM HUP; read _; exec flock "$2" sh -c 'T=$(mktemp "$1.edgev2-XXXXXX") && grep -vF -- "$2" "$1" > "$T"; chmod --reference="$1" "$T"; mv -f "$T" "$1" 2>/dev/null || { cat "$T" > "$1"; rm -f "$T"; }' sh "$1" "$3"`
	cmd := exec.Command("sh", "-c", script, "sh", hostsPath, lockPath, owner)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	w, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the hosts-line reaper: %w", err)
	}
	// The write end stays open (and referenced) for the process's life;
	// it is not inherited by children (Go opens it close-on-exec).
	reaperPipe = w
	return cmd, nil
}

var reaperPipe io.WriteCloser

// add reserves n hosts under the lock: random addresses that no line
// names and that can be bound, then their lines.
func add(n int) ([]Host, error) {
	unlock, err := lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	data, err := os.ReadFile(hostsPath)
	if err != nil {
		return nil, err
	}
	data, _ = sweep(data, alive)
	taken := takenAddrs(data)
	if len(data) > 0 && data[len(data)-1] != '\n' {
		data = append(data, '\n')
	}
	var hosts []Host
	for try := 0; try < 64*n && len(hosts) < n; try++ {
		var b [2]byte
		rand.Read(b[:])
		ip := netip.AddrFrom4([4]byte{127, 77, b[0], 1 + b[1]%254})
		if taken[ip] {
			continue
		}
		ln, err := net.Listen("tcp", netip.AddrPortFrom(ip, Port).String())
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				continue
			}
			return nil, fmt.Errorf("listen on %s:%d (needs root or CAP_NET_BIND_SERVICE): %w", ip, Port, err)
		}
		ln.Close()
		taken[ip] = true
		// The name follows from the address, so it is as unique as the address.
		h := Host{Name: fmt.Sprintf("hub-%d-%d.%s", ip.As4()[2], ip.As4()[3], Domain), IP: ip}
		data = fmt.Appendf(data, "%s %s %s pid=%d start=%s\n", ip, h.Name, marker, os.Getpid(), startTime(os.Getpid()))
		hosts = append(hosts, h)
	}
	if len(hosts) < n {
		return nil, fmt.Errorf("no free loopback address in 127.77.0.0/16 after %d tries", 64*n)
	}
	if err := writeHosts(data); err != nil {
		return nil, err
	}
	return hosts, nil
}

// sweep keeps every line that is not ours, and ours for which keep says so.
func sweep(data []byte, keep func(fields []string) bool) ([]byte, int) {
	var out bytes.Buffer
	dropped := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); ours(f) {
			if !keep(f) {
				dropped++
				continue
			}
		}
		out.WriteString(line)
		out.WriteByte('\n')
	}
	return out.Bytes(), dropped
}

// ours: "IP NAME # edgev2-labhost ...".
func ours(f []string) bool {
	return len(f) >= 4 && f[2]+" "+f[3] == marker
}

// alive reports whether a line's owner (pid=N start=T) still runs.
func alive(fields []string) bool {
	var pid int
	var start string
	for _, f := range fields {
		if v, ok := strings.CutPrefix(f, "pid="); ok {
			pid, _ = strconv.Atoi(v)
		}
		if v, ok := strings.CutPrefix(f, "start="); ok {
			start = v
		}
	}
	if pid <= 0 {
		return false
	}
	return start != "" && startTime(pid) == start
}

// takenAddrs are the addresses our lines name.
func takenAddrs(data []byte) map[netip.Addr]bool {
	taken := map[netip.Addr]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); ours(f) {
			if ip, err := netip.ParseAddr(f[0]); err == nil {
				taken[ip] = true
			}
		}
	}
	return taken
}

// startTime is field 22 of /proc/PID/stat (clock ticks since boot), which
// tells a pid's owner from a later process given the same pid; "" if gone.
func startTime(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	i := bytes.LastIndexByte(data, ')') // the command name may hold spaces
	if i < 0 {
		return ""
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 20 {
		return ""
	}
	return f[19]
}

// lock takes the exclusive flock that serialises every edit, across processes.
func lock() (func(), error) {
	if err := os.MkdirAll(filepath.Dir(lockPath), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", lockPath, err)
	}
	return func() { f.Close() }, nil
}

// writeHosts replaces the hosts file atomically (temp file, rename) so a
// concurrent lookup sees the old or the new file; where /etc/hosts is a
// mount point (containers bind it), rename fails and it is rewritten in place.
func writeHosts(data []byte) error {
	fi, err := os.Stat(hostsPath)
	if err != nil {
		return err
	}
	dir := filepath.Dir(hostsPath)
	tmp, err := os.CreateTemp(dir, ".hosts.edgev2-*")
	if err == nil {
		name := tmp.Name()
		_, werr := tmp.Write(data)
		if werr == nil {
			werr = tmp.Chmod(fi.Mode().Perm())
		}
		if werr == nil {
			werr = tmp.Sync()
		}
		if cerr := tmp.Close(); werr == nil {
			werr = cerr
		}
		if werr == nil {
			if werr = os.Rename(name, hostsPath); werr == nil {
				return nil
			}
		}
		os.Remove(name)
	}
	f, err := os.OpenFile(hostsPath, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// waitResolvable waits until this process's resolver maps h.Name to h.IP.
func waitResolvable(h Host) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		addrs, err := net.DefaultResolver.LookupHost(ctx, h.Name)
		for _, a := range addrs {
			if a == h.IP.String() {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s does not resolve to %s after 15 s (last: %v %v; is %q read by the resolver?)", h.Name, h.IP, addrs, err, hostsPath)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
