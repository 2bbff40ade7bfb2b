package modrt

import (
	"context"
	"time"

	rtconfig "github.com/edgev2/edgev2/modrt/config"
)

// nextAt is the first time at or after now that falls atMinute minutes
// after a local midnight.
func nextAt(now time.Time, atMinute int) time.Time {
	y, m, d := now.Date()
	t := time.Date(y, m, d, atMinute/60, atMinute%60, 0, 0, now.Location())
	if t.Before(now) {
		t = time.Date(y, m, d+1, atMinute/60, atMinute%60, 0, 0, now.Location())
	}
	return t
}

// RunImageGC removes images unused for cfg.UnusedFor at cfg's time of day
// and then every cfg.Every, until ctx ends. Containers that use an image
// keep it, whatever its age.
func (s *Service) RunImageGC(ctx context.Context, cfg rtconfig.ImageGCConfig) {
	if !cfg.GCEnabled() {
		return
	}
	next := nextAt(time.Now(), cfg.AtMinute)
	for {
		s.log.Info("image garbage collection scheduled", "at", next.Format(time.RFC3339), "unused_for", cfg.UnusedFor)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(next)):
		}
		removed, err := s.rt.GCImages(ctx, cfg.UnusedFor)
		if err != nil {
			s.log.Warn("image garbage collection failed", "err", err)
		} else {
			s.log.Info("image garbage collection done", "removed", len(removed), "images", removed)
		}
		next = next.Add(cfg.Every)
		if now := time.Now(); next.Before(now) { // the machine slept
			next = now.Add(cfg.Every)
		}
	}
}
