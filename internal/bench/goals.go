package main

import (
	"fmt"
	"strings"
)

// A goal is a target the issues set for a figure (issue 1: Sign at 8
// clients >= 0.9x the raw round trip; keyd idle RSS <= 15 MB). The benchmark
// is a report and exits 0 either way; its last line says which are met.
type goal struct {
	name string // "Sign hmac-sha256, file engine >= 0.90x round trip at 8 clients"
	got  string // the measured figure, "0.84"
	met  bool
}

// summary is the one-line verdict over goals.
func summary(goals []goal) string {
	var met, missed []string
	for _, g := range goals {
		s := g.name + ": " + g.got
		if g.met {
			met = append(met, s)
		} else {
			missed = append(missed, s)
		}
	}
	line := fmt.Sprintf("goals: %d of %d met", len(met), len(goals))
	if len(missed) > 0 {
		line += "; NOT met: " + strings.Join(missed, "; ")
	}
	if len(met) > 0 {
		line += "; met: " + strings.Join(met, "; ")
	}
	return line
}

// signGoal: Sign through keyd at 8 clients against the raw D-Bus round trip.
func signGoal(figure string, ops, roundTrip float64) goal {
	ratio := 0.0
	if roundTrip > 0 {
		ratio = ops / roundTrip
	}
	return goal{name: figure + " >= 0.90x round trip at 8 clients", got: fmt.Sprintf("%.2f", ratio), met: ratio >= 0.90}
}

// rssGoal: keyd's resident memory when idle.
func rssGoal(engine string, kib int) goal {
	mb := float64(kib) / 1024
	return goal{name: "keyd idle RSS (" + engine + " engine) <= 15 MB", got: fmt.Sprintf("%.1f MB", mb), met: kib > 0 && mb <= 15}
}
