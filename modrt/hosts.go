package modrt

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/edgev2/edgev2/modrt/modspec"
)

// Modules find each other by name through hosts files the runtime keeps
// and binds read-only at /etc/hosts (the way names resolve on IoT Edge's
// azure-iot-edge network):
//   - modules on the default network get networkHosts: localhost, then
//     every module attached to the network at its address, and the
//     host-network modules at the bridge's gateway address;
//   - host-network modules get hostHosts: the host's /etc/hosts, the
//     host-network modules at 127.0.0.1 and the default network's modules
//     at their addresses.
// The files are rewritten in place whenever a module joins or leaves the
// network: a bind mount pins the file's inode, so a renamed replacement
// would not be seen. Default-network modules also get a resolv.conf
// without the host's loopback name servers (127.0.0.53 is the module's own
// loopback there).

const hostsMarker = "# edgev2 modules"

const (
	hostHostsName    = "hosts"         // for host-network modules
	networkHostsName = "network-hosts" // for default-network modules
	resolvConfName   = "network-resolv.conf"
)

// hostEntry is one module's line.
type hostEntry struct {
	addr string
	name string
}

// hostsText is base with the modules' lines.
func hostsText(base []byte, entries []hostEntry) []byte {
	var b bytes.Buffer
	b.Write(base)
	if len(base) > 0 && !bytes.HasSuffix(base, []byte("\n")) {
		b.WriteByte('\n')
	}
	b.WriteString(hostsMarker + "\n")
	byAddr := map[string][]string{}
	var addrs []string
	for _, e := range entries {
		if _, ok := byAddr[e.addr]; !ok {
			addrs = append(addrs, e.addr)
		}
		byAddr[e.addr] = append(byAddr[e.addr], e.name)
	}
	for _, a := range addrs {
		fmt.Fprintf(&b, "%s\t%s\n", a, strings.Join(byAddr[a], " "))
	}
	return b.Bytes()
}

const networkHostsBase = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"

// moduleHosts computes both files' module lines. hostNet are the names of
// host-network modules (plus one being created), attached the default
// network's modules with their addresses.
func moduleHosts(hostNet []string, attached map[string]netip.Addr, gateway netip.Addr) (forHost, forNetwork []hostEntry) {
	slices.Sort(hostNet)
	hostNet = slices.Compact(hostNet)
	for _, n := range hostNet {
		forHost = append(forHost, hostEntry{"127.0.0.1", n})
		if gateway.IsValid() {
			forNetwork = append(forNetwork, hostEntry{gateway.String(), n})
		}
	}
	names := make([]string, 0, len(attached))
	for n := range attached {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		e := hostEntry{attached[n].String(), n}
		forHost = append(forHost, e)
		forNetwork = append(forNetwork, e)
	}
	return forHost, forNetwork
}

// resolvConfText is base without loopback name servers.
func resolvConfText(base []byte) []byte {
	var b bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(base))
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "nameserver" {
			if a, err := netip.ParseAddr(strings.Split(f[1], "%")[0]); err == nil && a.IsLoopback() {
				b.WriteString("# " + line + " (loopback: not reachable from a module's network)\n")
				continue
			}
		}
		b.WriteString(line + "\n")
	}
	return b.Bytes()
}

func (s *Service) hostsPath(name string) string { return filepath.Join(s.hostsDir, name) }

// refreshHosts rewrites the modules' hosts files with every module the
// runtime has, plus hostExtra (a host-network module being created).
func (s *Service) refreshHosts(ctx context.Context, hostExtra ...string) error {
	if s.hostsDir == "" {
		return nil
	}
	s.hostsMu.Lock()
	defer s.hostsMu.Unlock()
	sts, err := s.rt.List(ctx)
	if err != nil {
		return err
	}
	hostNet := slices.Clone(hostExtra)
	attached := map[string]netip.Addr{}
	for _, st := range sts {
		switch {
		case st.Network == modspec.NetModeHost:
			hostNet = append(hostNet, st.Name)
		case st.Addr.IsValid():
			attached[st.Name] = st.Addr
		}
	}
	var gw netip.Addr
	if n, ok := s.rt.Network().(*Network); ok && n != nil {
		gw = n.Gateway()
	}
	forHost, forNetwork := moduleHosts(hostNet, attached, gw)
	base, err := os.ReadFile(s.hostsBase)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("read %s: %w", s.hostsBase, err)
	}
	resolv, err := os.ReadFile(s.resolvBase)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("read %s: %w", s.resolvBase, err)
	}
	if err := os.MkdirAll(s.hostsDir, 0o755); err != nil {
		return err
	}
	for name, text := range map[string][]byte{
		hostHostsName:    hostsText(base, forHost),
		networkHostsName: hostsText([]byte(networkHostsBase), forNetwork),
		resolvConfName:   resolvConfText(resolv),
	} {
		if err := rewriteInPlace(s.hostsPath(name), text); err != nil {
			return err
		}
	}
	return nil
}

func rewriteInPlace(path string, text []byte) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, text) {
		if st, err := os.Stat(path); err == nil && st.Mode().Perm() == 0o644 {
			return nil
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("modules' hosts file: %w", err)
	}
	// 0644 whatever the umask (the unit's is 0077): module processes that
	// are not root read it as /etc/hosts.
	werr := f.Chmod(0o644)
	if werr == nil {
		_, werr = f.WriteAt(text, 0)
	}
	if werr == nil {
		werr = f.Truncate(int64(len(text)))
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	return werr
}
