// Package testlog sends the log of a lab cloud server started by a test
// to that test's t.Logf, one line per event with the server's prefix.
package testlog

import (
	"log/slog"
	"strings"
)

// Logger logs to t.Logf, each line prefixed by "prefix: ", when t has a
// Logf (a *testing.T does); otherwise it is nil, which the servers take as
// a logger that discards.
func Logger(t any, prefix string) *slog.Logger {
	l, ok := t.(interface{ Logf(string, ...any) })
	if !ok {
		return nil
	}
	return slog.New(slog.NewTextHandler(logfWriter{l: l, prefix: prefix}, nil))
}

type logfWriter struct {
	l      interface{ Logf(string, ...any) }
	prefix string
}

func (w logfWriter) Write(p []byte) (int, error) {
	w.l.Logf("%s: %s", w.prefix, strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
