package cloudhttp

import (
	"errors"
	"testing"
	"time"

	"github.com/edgev2/edgev2/internal/fault"
)

func TestDefaultFillsZeroKeepsPositiveRefusesNegative(t *testing.T) {
	for _, tc := range []struct {
		in, want time.Duration
		err      string
	}{
		{in: 0, want: 30 * time.Second},
		{in: time.Second, want: time.Second},
		{in: -time.Second, want: -time.Second, err: "DPS timeout -1s is negative"},
	} {
		v := tc.in
		err := Default("DPS", "timeout", &v, 30*time.Second)
		if v != tc.want {
			t.Errorf("Default(%v) left %v, want %v", tc.in, v, tc.want)
		}
		var fe *fault.Error
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("Default(%v): %v", tc.in, err)
		case tc.err != "" && (!errors.As(err, &fe) || fe.Kind != fault.InvalidArgs || fe.Msg != tc.err):
			t.Errorf("Default(%v) = %v, want InvalidArgs %q", tc.in, err, tc.err)
		}
	}
	n := -2
	if err := Default("EST", "MaxAttempts", &n, 10); err == nil || err.Error() != "EST MaxAttempts -2 is negative" {
		t.Errorf("a negative count: %v", err)
	}
}
