package mgmt

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// HostSystemInfo describes this host for GET /systeminfo; the caller fills
// in Provisioning (and Extra, Resources if it wants).
func HostSystemInfo(version string) SystemInfo {
	info := SystemInfo{OSType: runtime.GOOS, Architecture: runtime.GOARCH, Version: version, CPUs: runtime.NumCPU()}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		info.OSType = unix.ByteSliceToString(u.Sysname[:])
		info.Architecture = unix.ByteSliceToString(u.Machine[:])
		info.KernelVersion = unix.ByteSliceToString(u.Release[:])
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		info.OperatingSystem = osReleaseName(b)
	}
	if mi, err := readMeminfo(); err == nil {
		info.TotalMemory = mi["MemTotal"]
	}
	return info
}

// osReleaseName is PRETTY_NAME of an os-release file (or NAME VERSION_ID).
func osReleaseName(b []byte) string {
	vals := map[string]string{}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		if uq, err := strconv.Unquote(v); err == nil {
			v = uq
		} else {
			v = strings.Trim(v, `'"`)
		}
		vals[k] = v
	}
	if n := vals["PRETTY_NAME"]; n != "" {
		return n
	}
	return strings.TrimSpace(vals["NAME"] + " " + vals["VERSION_ID"])
}

// readMeminfo returns /proc/meminfo in bytes.
func readMeminfo() (map[string]uint64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	for line := range strings.Lines(string(b)) {
		k, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			continue
		}
		if len(f) > 1 && f[1] == "kB" {
			n *= 1024
		}
		out[k] = n
	}
	return out, nil
}

type cpuTimes struct{ busy, total uint64 }

func readCPUTimes() (cpuTimes, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return cpuTimes{}, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return cpuTimes{}, fmt.Errorf("read /proc/stat: %v", sc.Err())
	}
	fields := strings.Fields(sc.Text())
	if len(fields) < 5 || fields[0] != "cpu" {
		return cpuTimes{}, fmt.Errorf("read /proc/stat: unexpected first line %q", sc.Text())
	}
	var t cpuTimes
	for i, s := range fields[1:] {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return cpuTimes{}, fmt.Errorf("read /proc/stat: %w", err)
		}
		if i >= 8 { // guest times are already in user and nice
			break
		}
		t.total += n
		if i != 3 && i != 4 { // idle, iowait
			t.busy += n
		}
	}
	return t, nil
}

// hostResources samples the host: CPU use since the previous sample
// (since boot for the first), memory, uptime and block-device file systems.
func (s *Server) hostResources() (SystemResources, error) {
	var res SystemResources
	if b, err := os.ReadFile("/proc/uptime"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			if secs, err := strconv.ParseFloat(f[0], 64); err == nil {
				res.HostUptime = time.Duration(secs * float64(time.Second))
			}
		}
	}
	cur, err := readCPUTimes()
	if err != nil {
		return res, err
	}
	s.cpuMu.Lock()
	prev := s.cpuLast
	s.cpuLast = cur
	s.cpuMu.Unlock()
	if dt := cur.total - prev.total; cur.total > prev.total && cur.busy >= prev.busy {
		res.UsedCPU = float64(cur.busy-prev.busy) / float64(dt) * 100
	}
	mi, err := readMeminfo()
	if err != nil {
		return res, fmt.Errorf("read /proc/meminfo: %w", err)
	}
	res.TotalRAM = mi["MemTotal"]
	if avail, ok := mi["MemAvailable"]; ok && avail <= res.TotalRAM {
		res.UsedRAM = res.TotalRAM - avail
	}
	res.Disks = hostDisks()
	return res, nil
}

// hostDisks lists the file systems mounted from block devices, each
// device once.
func hostDisks() []Disk {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	var out []Disk
	for line := range bytes.Lines(b) {
		f := strings.Fields(string(line))
		if len(f) < 3 || !strings.HasPrefix(f[0], "/dev/") || seen[f[0]] {
			continue
		}
		var st unix.Statfs_t
		if unix.Statfs(unescapeMount(f[1]), &st) != nil {
			continue
		}
		seen[f[0]] = true
		bs := uint64(st.Bsize)
		out = append(out, Disk{Name: f[0], AvailableSpace: st.Bavail * bs, TotalSpace: st.Blocks * bs,
			FileSystem: f[2], FileType: "Unknown"})
	}
	return out
}

// unescapeMount undoes the octal escapes (\040 for a space) of /proc/mounts.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
