package config

import (
	"errors"
	"strings"
	"testing"
)

// Every module gets a pids limit unless the operator says otherwise; a
// deployment may ask up to the maximum, which defaults to the default.
func TestPidsLimitsDefaultAndRefusals(t *testing.T) {
	for _, tc := range []struct {
		text     string
		def, max int64
	}{
		{"", DefaultPidsLimit, DefaultPidsLimit},
		{"[policy]\ndefault_pids_limit = 256\n", 256, 256},
		{"[policy]\nmax_pids_limit = 4096\n", DefaultPidsLimit, 4096},
		{"[policy]\nmax_pids_limit = -1\n", DefaultPidsLimit, 0},
		{"[policy]\ndefault_pids_limit = -1\nmax_pids_limit = -1\n", 0, 0},
		{"[policy]\ndefault_pids_limit = -1\n", 0, 0}, // no limit: no maximum either
	} {
		c, err := ParseConfig("modrtd.toml", []byte("homedir = \"/h\"\n"+tc.text))
		if err != nil {
			t.Fatalf("%q: %v", tc.text, err)
		}
		if def, max := c.Policy.PidsLimits(); def != tc.def || max != tc.max {
			t.Errorf("%q: limits %d, %d; want %d, %d", tc.text, def, max, tc.def, tc.max)
		}
	}
	for _, tc := range []struct{ text, key, problem string }{
		{"[policy]\ndefault_pids_limit = -2\n", "policy.default_pids_limit", "not a pids limit"},
		{"[policy]\ndefault_pids_limit = 3\n", "policy.default_pids_limit", "not a pids limit"},
		{"[policy]\nmax_pids_limit = 5000000\n", "policy.max_pids_limit", "not a pids limit"},
		{"[policy]\nmax_pids_limit = 512\n", "policy.max_pids_limit", "below default_pids_limit"},
		{"[policy]\ndefault_pids_limit = -1\nmax_pids_limit = 2048\n", "policy.max_pids_limit", "no limit"},
	} {
		_, err := ParseConfig("modrtd.toml", []byte("homedir = \"/h\"\n"+tc.text))
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Key != tc.key || !strings.Contains(ce.Problem, tc.problem) {
			t.Errorf("%q: %v, want key %s about %q", tc.text, err, tc.key, tc.problem)
		}
	}
}

// A deployment's LogConfig may ask for at most max_log_size of disk per
// module: 1 GiB unless the operator says otherwise.
func TestMaxLogSizeDefaultAndRefusals(t *testing.T) {
	for _, tc := range []struct {
		text string
		want int64
	}{
		{"", 1 << 30},
		{"[policy]\nmax_log_size = \"200m\"\n", 200 << 20},
		{"[policy]\nmax_log_size = \"-1\"\n", 0},
	} {
		c, err := ParseConfig("modrtd.toml", []byte("homedir = \"/h\"\n"+tc.text))
		if err != nil {
			t.Fatalf("%q: %v", tc.text, err)
		}
		if n, _ := c.Policy.LogLimit(); n != tc.want {
			t.Errorf("%q: %d; want %d", tc.text, n, tc.want)
		}
	}
	for _, text := range []string{"[policy]\nmax_log_size = \"lots\"\n", "[policy]\nmax_log_size = \"1m\"\n"} {
		_, err := ParseConfig("modrtd.toml", []byte("homedir = \"/h\"\n"+text))
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Key != "policy.max_log_size" {
			t.Errorf("%q: %v, want key policy.max_log_size", text, err)
		}
	}
}
