package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// anonKiB is the anonymous resident memory of process pid
// (smaps_rollup's Anonymous), in KiB; 0 when unreadable.
func anonKiB(pid int) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Anonymous:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return n
		}
	}
	return 0
}
