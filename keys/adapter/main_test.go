package adapter_test

import (
	"os"
	"testing"
)

// TestMain runs the test binary as one of the session tests' helper
// processes when the test that re-executes it says so, and the tests
// otherwise.
func TestMain(m *testing.M) {
	switch {
	case os.Getenv("EDGEV2_SESSION_HELPER") == "1":
		sessionHelperProcess()
	case os.Getenv("EDGEV2_SESSION_OPENER") == "1":
		sessionOpenerHelperProcess()
	}
	os.Exit(m.Run())
}
