package modrt

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Modules share the host's network, so every module is reachable at the
// loopback address; a hosts file the runtime keeps (the host's /etc/hosts
// plus one line naming every module) is bound read-only at /etc/hosts in
// each host-network module, so modules find each other by name, as on
// aziot-edged's module network. It is rewritten in place: a bind mount
// pins the file's inode, so a renamed replacement would not be seen.

const hostsMarker = "# edgev2 modules (host network: every module is on this host)"

// hostsText is base (the host's /etc/hosts) with the modules' line.
func hostsText(base []byte, names []string) []byte {
	var b bytes.Buffer
	b.Write(base)
	if len(base) > 0 && !bytes.HasSuffix(base, []byte("\n")) {
		b.WriteByte('\n')
	}
	b.WriteString(hostsMarker + "\n")
	if len(names) > 0 {
		fmt.Fprintf(&b, "127.0.0.1\t%s\n", strings.Join(names, " "))
	}
	return b.Bytes()
}

// refreshHosts rewrites the modules' hosts file with every module the
// runtime has, plus extra (a module being created).
func (s *Service) refreshHosts(ctx context.Context, extra ...string) error {
	if s.hostsFile == "" {
		return nil
	}
	s.hostsMu.Lock()
	defer s.hostsMu.Unlock()
	sts, err := s.rt.List(ctx)
	if err != nil {
		return err
	}
	names := slices.Clone(extra)
	for _, st := range sts {
		names = append(names, st.Name)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	base, err := os.ReadFile(s.hostsBase)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("read %s: %w", s.hostsBase, err)
	}
	if err := os.MkdirAll(filepath.Dir(s.hostsFile), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(s.hostsFile, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("modules' hosts file: %w", err)
	}
	_, werr := f.Write(hostsText(base, names))
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	return werr
}
