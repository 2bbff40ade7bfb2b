package modrt

import (
	"strings"
	"testing"
	"time"

	rtconfig "github.com/edgev2/edgev2/modrt/config"
)

func TestNextAtPicksTodayOrTomorrowAtTheConfiguredTime(t *testing.T) {
	loc := time.FixedZone("test", 2*3600)
	cases := []struct {
		now      time.Time
		atMinute int
		want     time.Time
	}{
		{time.Date(2026, 3, 1, 1, 0, 0, 0, loc), 3*60 + 30, time.Date(2026, 3, 1, 3, 30, 0, 0, loc)},
		{time.Date(2026, 3, 1, 3, 30, 0, 0, loc), 3*60 + 30, time.Date(2026, 3, 1, 3, 30, 0, 0, loc)},
		{time.Date(2026, 3, 1, 3, 31, 0, 0, loc), 3*60 + 30, time.Date(2026, 3, 2, 3, 30, 0, 0, loc)},
		{time.Date(2026, 12, 31, 23, 59, 0, 0, loc), 0, time.Date(2027, 1, 1, 0, 0, 0, 0, loc)},
	}
	for _, c := range cases {
		if got := nextAt(c.now, c.atMinute); !got.Equal(c.want) {
			t.Errorf("nextAt(%v, %d) = %v, want %v", c.now, c.atMinute, got, c.want)
		}
	}
}

func TestImageGCConfigParsesAziotStyleDurations(t *testing.T) {
	cases := []struct {
		text      string
		wantErr   string
		every     time.Duration
		unusedFor time.Duration
		at        int
	}{
		{"", "", 24 * time.Hour, 7 * 24 * time.Hour, 0},
		{"[image_garbage_collection]\ncleanup_recurrence = \"2d\"\nimage_age_cleanup_threshold = \"36h\"\ncleanup_time = \"03:30\"\n", "", 48 * time.Hour, 36 * time.Hour, 210},
		{"[image_garbage_collection]\ncleanup_time = \"3:30\"\n", "cleanup_time", 0, 0, 0},
		{"[image_garbage_collection]\ncleanup_time = \"24:00\"\n", "cleanup_time", 0, 0, 0},
		{"[image_garbage_collection]\ncleanup_recurrence = \"10m\"\n", "cleanup_recurrence", 0, 0, 0},
		{"[image_garbage_collection]\nimage_age_cleanup_threshold = \"-1d\"\n", "image_age_cleanup_threshold", 0, 0, 0},
	}
	for _, c := range cases {
		cfg, err := rtconfig.ParseConfig("modrtd.toml", []byte("homedir = \"/var/lib/edgev2/modrtd\"\n"+c.text))
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%q: error %v, want one naming %s", c.text, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", c.text, err)
		}
		g := cfg.ImageGC
		if g.Every != c.every || g.UnusedFor != c.unusedFor || g.AtMinute != c.at || !g.GCEnabled() {
			t.Errorf("%q: got every %v unused %v at %d enabled %v", c.text, g.Every, g.UnusedFor, g.AtMinute, g.GCEnabled())
		}
	}
}
