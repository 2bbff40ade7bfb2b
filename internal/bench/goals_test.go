package main

import (
	"strings"
	"testing"
)

func TestSummaryNamesTheGoalsMetAndNotMetOnOneLine(t *testing.T) {
	goals := []goal{
		signGoal("Sign hmac-sha256, file engine", 9560, 11374),
		signGoal("Sign ecdsa-sha256, file engine", 10300, 11374),
		rssGoal("file", 8400),
		rssGoal("pkcs11", 16000),
	}
	got := summary(goals)
	want := "goals: 2 of 4 met; NOT met: Sign hmac-sha256, file engine >= 0.90x round trip at 8 clients: 0.84; " +
		"keyd idle RSS (pkcs11 engine) <= 15 MB: 15.6 MB; met: Sign ecdsa-sha256, file engine >= 0.90x round trip at 8 clients: 0.91; " +
		"keyd idle RSS (file engine) <= 15 MB: 8.2 MB"
	if got != want {
		t.Errorf("summary =\n%s\nwant\n%s", got, want)
	}
	if strings.Contains(got, "\n") {
		t.Error("the summary is more than one line")
	}
	if got := summary([]goal{rssGoal("file", 0)}); !strings.HasPrefix(got, "goals: 0 of 1 met; NOT met:") {
		t.Errorf("an RSS that was not measured counts as met: %s", got)
	}
}
