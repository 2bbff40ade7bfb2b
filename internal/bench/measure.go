package main

import (
	"fmt"
	"math"
	"sort"
	"time"
)

// A probe measures once: operations per second at c clients over d, or,
// for a time figure, milliseconds.
type probe func(c int, d time.Duration) (float64, error)

// series is one thing measured repeatedly: a figure or a limit.
type series struct {
	Name    string    `json:"name"`
	Clients int       `json:"clients"`
	Unit    string    `json:"unit"` // "ops/s" (more is better) or "ms" (less is better)
	Samples []float64 `json:"samples"`
	run     probe
}

func rate(name string, c int, run probe) *series {
	return &series{Name: name, Clients: c, Unit: "ops/s", run: run}
}

func millis(name string, c int, run probe) *series {
	return &series{Name: name, Clients: c, Unit: "ms", run: run}
}

// interleave runs every series once per round, in order, for reps rounds
// (A, B, A, B, ...): a figure and its limits see the same machine.
func interleave(reps int, ss ...*series) error {
	for r := 0; r < reps; r++ {
		for _, s := range ss {
			v, err := s.run(s.Clients, *sample)
			if err != nil {
				return fmt.Errorf("%s (%d clients): %w", s.Name, s.Clients, err)
			}
			s.Samples = append(s.Samples, v)
		}
	}
	return nil
}

// combined is a limit derived round by round from two measured series
// (sample i of each comes from the same round).
func combined(name string, a, b *series, f func(x, y float64) float64) *series {
	s := &series{Name: name, Clients: a.Clients, Unit: a.Unit}
	for i := range a.Samples {
		if i < len(b.Samples) {
			s.Samples = append(s.Samples, f(a.Samples[i], b.Samples[i]))
		}
	}
	return s
}

// inSeries is the throughput of doing one operation of each, one after the
// other: 1 / (1/x + 1/y).
func inSeries(x, y float64) float64 {
	if x <= 0 || y <= 0 {
		return 0
	}
	return 1 / (1/x + 1/y)
}

func (s *series) sorted() []float64 {
	v := append([]float64(nil), s.Samples...)
	sort.Float64s(v)
	return v
}

func (s *series) median() float64 {
	v := s.sorted()
	if len(v) == 0 {
		return 0
	}
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func (s *series) min() float64 { v := s.sorted(); return v[0] }
func (s *series) max() float64 { v := s.sorted(); return v[len(v)-1] }

// text is "median (min–max)".
func (s *series) text() string {
	if len(s.Samples) == 0 {
		return "-"
	}
	return fmt.Sprintf("%s (%s–%s)", num(s.median()), num(s.min()), num(s.max()))
}

func num(x float64) string {
	switch {
	case x >= 100:
		return fmt.Sprintf("%.0f", x)
	case x >= 10:
		return fmt.Sprintf("%.1f", x)
	default:
		return fmt.Sprintf("%.2f", x)
	}
}

// row is a figure beside its limit, the ratio of their medians and, when
// an issue sets one, the goal for that ratio.
type row struct {
	Section string  `json:"section"`
	Figure  *series `json:"figure"`
	Limit   *series `json:"limit,omitempty"`
	Ratio   float64 `json:"ratio,omitempty"` // figure / limit (medians)
	Goal    *goal   `json:"goal,omitempty"`
}

// goal: Ratio >= Min (or <= Max) is met.
type goal struct {
	Text string  `json:"text"` // "≥ 0.90× round trip + raw op in series"
	Min  float64 `json:"min,omitempty"`
	Max  float64 `json:"max,omitempty"`
	Met  bool    `json:"met"`
}

func atLeast(min float64, text string) *goal { return &goal{Text: text, Min: min} }
func atMost(max float64, text string) *goal  { return &goal{Text: text, Max: max} }

// against makes a row with the ratio of the medians, judged by g (nil: no
// goal). A row made before its series are measured is judged again by
// rejudge once they are.
func against(section string, fig, limit *series, g *goal) row {
	r := row{Section: section, Figure: fig, Limit: limit, Goal: g}
	r.judge()
	return r
}

// judge sets the ratio of the medians and whether the goal is met.
func (r *row) judge() {
	r.Ratio = 0
	if r.Limit != nil && r.Limit.median() > 0 {
		r.Ratio = r.Figure.median() / r.Limit.median()
	}
	if g := r.Goal; g != nil {
		v := r.Ratio
		if r.Limit == nil {
			v = r.Figure.median()
		}
		switch {
		case g.Max > 0:
			g.Met = v > 0 && v <= g.Max
		default:
			g.Met = v >= g.Min && !math.IsNaN(v)
		}
	}
}

// rejudge judges every row on the samples its series hold now.
func rejudge(rows []row) {
	for i := range rows {
		rows[i].judge()
	}
}
