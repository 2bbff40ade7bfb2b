package main

import (
	"fmt"
	"io"
	"strings"
)

// printReport prints the table: each figure with its median and spread
// (min–max over the repetitions), its limit the same way, the ratio of the
// medians and the goal for it, met or NOT MET; then memory, notes and a
// one-line verdict.
func printReport(w io.Writer, rep *report) {
	fmt.Fprintf(w, "edgev2 benchmark — commit %s, %d cores, %d interleaved repetitions of %s per figure and limit; median (min–max); load clients are uid %s with polkit authorization on\n",
		rep.Commit, rep.Cores, rep.Reps, rep.Sample, "edgev2-tester")
	section := ""
	for _, r := range rep.Rows {
		if r.Section != section {
			section = r.Section
			fmt.Fprintf(w, "\n%s\n  %-52s %3s %-24s %-34s %-22s %6s  %s\n", section, "figure", "c", "median (min–max)", "limit", "median (min–max)", "ratio", "goal")
		}
		unit := ""
		if r.Figure.Unit == "ms" {
			unit = " ms"
		}
		line := fmt.Sprintf("  %-52s %3d %-24s", r.Figure.Name, r.Figure.Clients, r.Figure.text()+unit)
		if r.Limit != nil {
			line += fmt.Sprintf(" %-34s %-22s %6.2f", r.Limit.Name, r.Limit.text()+unit, r.Ratio)
		} else if r.Goal != nil {
			line += fmt.Sprintf(" %-34s %-22s %6s", "", "", "")
		}
		if r.Goal != nil {
			line += "  " + verdict(r.Goal)
		}
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
	if len(rep.Memory) > 0 {
		fmt.Fprintf(w, "\nResident memory (VmRSS; of it anonymous: heap and stacks, the rest mapped files, mostly code)\n")
		for _, m := range rep.Memory {
			line := fmt.Sprintf("  %-30s %-11s %6.1f MiB (anon %4.1f)", m.Daemon, m.When, m.MiB, m.AnonMiB)
			if m.Goal != nil {
				line += "  " + verdict(m.Goal)
			}
			fmt.Fprintln(w, line)
		}
	}
	if len(rep.Notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range rep.Notes {
			fmt.Fprintln(w, n)
		}
	}
	fmt.Fprintf(w, "\n%s (run took %s)\n", summary(rep), rep.Elapsed)
}

func verdict(g *goal) string {
	if g.Met {
		return "goal " + g.Text + ": met"
	}
	return "goal " + g.Text + ": NOT MET"
}

// summary is the one-line verdict over every goal.
func summary(rep *report) string {
	var met, missed []string
	add := func(name string, g *goal) {
		if g.Met {
			met = append(met, name)
		} else {
			missed = append(missed, name)
		}
	}
	for _, r := range rep.Rows {
		if r.Goal != nil {
			v := r.Ratio
			if r.Limit == nil {
				v = r.Figure.median()
			}
			add(fmt.Sprintf("%s at %d (%s %s)", r.Figure.Name, r.Figure.Clients, num(v), r.Goal.Text), r.Goal)
		}
	}
	for _, m := range rep.Memory {
		if m.Goal != nil {
			add(fmt.Sprintf("%s %s RSS %.1f MiB %s", m.Daemon, m.When, m.MiB, m.Goal.Text), m.Goal)
		}
	}
	line := fmt.Sprintf("goals: %d of %d met", len(met), len(met)+len(missed))
	if len(missed) > 0 {
		line += "; NOT met: " + strings.Join(missed, "; ")
	}
	return line
}
