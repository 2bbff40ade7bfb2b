package ctrd

import (
	"testing"
	"time"

	"github.com/edgev2/edgev2/modrt/modspec"
)

func TestDecideRestartFollowsPolicyAndBacksOff(t *testing.T) {
	const (
		base   = time.Second
		capD   = 5 * time.Minute
		stable = time.Minute
	)
	tests := []struct {
		name   string
		policy modspec.RestartPolicy
		code   int
		step   int
		uptime time.Duration
		want   restartDecision
	}{
		{"never ignores a failure", modspec.RestartNever, 1, 0, 0, restartDecision{}},
		{"never ignores a clean exit", modspec.RestartNever, 0, 0, 0, restartDecision{}},
		{"on-failure ignores a clean exit", modspec.RestartOnFailure, 0, 3, 0, restartDecision{}},
		{"on-failure restarts a failure after 1s", modspec.RestartOnFailure, 1, 0, 0, restartDecision{true, time.Second, 1}},
		{"on-failure restarts an unknown exit", modspec.RestartOnFailure, -1, 0, 0, restartDecision{true, time.Second, 1}},
		{"always restarts a clean exit", modspec.RestartAlways, 0, 0, 0, restartDecision{true, time.Second, 1}},
		{"second restart waits 2s", modspec.RestartAlways, 1, 1, time.Second, restartDecision{true, 2 * time.Second, 2}},
		{"fifth restart waits 16s", modspec.RestartAlways, 1, 4, time.Second, restartDecision{true, 16 * time.Second, 5}},
		{"delay is capped", modspec.RestartAlways, 1, 20, time.Second, restartDecision{true, capD, 21}},
		{"huge step does not overflow", modspec.RestartAlways, 1, 1000, 0, restartDecision{true, capD, 1001}},
		{"stable run resets the back-off", modspec.RestartAlways, 1, 9, stable, restartDecision{true, time.Second, 1}},
		{"just short of stable keeps backing off", modspec.RestartAlways, 1, 2, stable - time.Millisecond, restartDecision{true, 4 * time.Second, 3}},
		{"unknown policy never restarts", modspec.RestartPolicy("sometimes"), 1, 0, 0, restartDecision{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := decideRestart(tt.policy, tt.code, tt.step, tt.uptime, base, capD, stable)
			if got != tt.want {
				t.Fatalf("decideRestart(%q, code %d, step %d, uptime %v) = %+v, want %+v", tt.policy, tt.code, tt.step, tt.uptime, got, tt.want)
			}
		})
	}
}
