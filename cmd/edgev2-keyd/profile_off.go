//go:build !pprof

package main

import "log/slog"

// startCPUProfile is a no-op in the shipped keyd. runtime/pprof (with
// compress/flate and text/tabwriter) is a quarter of a MiB of code, and
// keyd's idle RSS is mostly code pages (its own binary is all resident:
// 6 of 15 MiB on a SoftHSM token), so every package linked costs resident
// memory. A benchmark that wants profiles builds with -tags pprof
// (GOFLAGS=-tags=pprof make bench).
func startCPUProfile(path string, log *slog.Logger) (stop func()) {
	if path != "" {
		log.Warn("--cpuprofile ignored: this keyd was built without -tags pprof", "file", path)
	}
	return func() {}
}
