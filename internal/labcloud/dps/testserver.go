package dps

import (
	"path/filepath"

	"github.com/edgev2/edgev2/internal/labcloud/testlog"
)

// TB is the part of testing.TB the test helpers use, so this file need
// not import testing.
type TB interface {
	Helper()
	Cleanup(func())
	Fatalf(format string, args ...any)
	TempDir() string
}

// NewTestServer makes a DPS with its state in t.TempDir(), assigning to
// hubHostname and creating devices in registry (may be nil). Serve its
// Handler yourself, or use labcloud.StartTestCloud for DPS, hub and EST on
// one HTTPS listener.
func NewTestServer(t TB, cfg Config, hubHostname string, registry Registry) *Server {
	t.Helper()
	if cfg.AssignedHub == "" {
		cfg.AssignedHub = hubHostname
	}
	logger := testlog.Logger(t, "labcloud dps")
	s, err := NewServer(cfg, filepath.Join(t.TempDir(), "dps"), registry, logger)
	if err != nil {
		t.Fatalf("start DPS test server: %v", err)
	}
	return s
}
