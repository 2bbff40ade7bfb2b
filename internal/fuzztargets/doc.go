// Package fuzztargets holds no code: its test checks that `make fuzz` finds
// every fuzz target in the repository, so a new one cannot be left out.
package fuzztargets
