package testpki

// TB is what the helpers need of a test: testing.TB and internal/testenv's
// TB both have it.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}
