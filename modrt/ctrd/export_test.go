package ctrd

import "testing"

// For the external tests (policy_race_test.go runs modrt's policy checks
// in the runtime).

const TestImage = testImage

func StartRuntime(t *testing.T, configure ...func(*RuntimeConfig)) *Runtime {
	return startRuntime(t, configure...).rt
}

var LogText = logText
