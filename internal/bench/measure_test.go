package main

import (
	"strings"
	"testing"
)

func samples(name string, c int, unit string, v ...float64) *series {
	return &series{Name: name, Clients: c, Unit: unit, Samples: v}
}

func TestMedianAndSpreadOverTheRepetitions(t *testing.T) {
	tests := []struct {
		v        []float64
		med      float64
		min, max float64
	}{
		{[]float64{5, 1, 3}, 3, 1, 5},
		{[]float64{4, 1, 3, 2}, 2.5, 1, 4},
		{[]float64{7}, 7, 7, 7},
	}
	for _, tt := range tests {
		s := samples("x", 1, "ops/s", tt.v...)
		if s.median() != tt.med || s.min() != tt.min || s.max() != tt.max {
			t.Errorf("%v: median %v min %v max %v; want %v %v %v", tt.v, s.median(), s.min(), s.max(), tt.med, tt.min, tt.max)
		}
	}
}

func TestLimitInSeriesIsRoundByRound(t *testing.T) {
	rt := samples("rt", 1, "ops/s", 1000, 2000)
	raw := samples("raw", 1, "ops/s", 1000, 2000)
	got := combined("series", rt, raw, inSeries)
	if len(got.Samples) != 2 || got.Samples[0] != 500 || got.Samples[1] != 1000 {
		t.Fatalf("in series: %v, want [500 1000]", got.Samples)
	}
	if inSeries(0, 10) != 0 {
		t.Fatal("a limit not measured gives a limit")
	}
}

func TestGoalsAreJudgedAndEveryUnmetOneIsNamed(t *testing.T) {
	rep := &report{
		Rows: []row{
			against("s", samples("Sign", 1, "ops/s", 900, 910, 920), samples("limit", 1, "ops/s", 1000, 1000, 1000), atLeast(0.9, "≥ 0.90")),
			against("s", samples("Sign", 8, "ops/s", 800, 850, 890), samples("limit", 8, "ops/s", 1000, 1000, 1000), atLeast(0.9, "≥ 0.90")),
			against("s", samples("beyond", 1, "ms", 90, 120, 150), nil, atMost(100, "≤ 100 ms")),
			against("s", samples("info", 1, "ops/s", 1), nil, nil),
		},
		Memory: []rss{{Daemon: "keyd", When: "idle", MiB: 14.9, Goal: &goal{Text: "≤ 15 MiB", Max: 15, Met: true}}},
	}
	if !rep.Rows[0].Goal.Met || rep.Rows[1].Goal.Met || rep.Rows[2].Goal.Met {
		t.Fatalf("goals judged %v %v %v; want met, not met, not met", rep.Rows[0].Goal.Met, rep.Rows[1].Goal.Met, rep.Rows[2].Goal.Met)
	}
	got := summary(rep)
	if !strings.HasPrefix(got, "goals: 2 of 4 met; NOT met: ") || !strings.Contains(got, "Sign at 8 (0.85 ≥ 0.90)") || !strings.Contains(got, "beyond at 1 (120 ≤ 100 ms)") {
		t.Fatalf("summary: %s", got)
	}
	var out strings.Builder
	printReport(&out, rep)
	if strings.Count(out.String(), "NOT MET") != 2 {
		t.Fatalf("the table does not mark both unmet goals NOT MET:\n%s", out.String())
	}
}

func TestRowMadeBeforeMeasuringIsJudgedOnItsSamples(t *testing.T) {
	fig, limit := samples("Sign", 1, "ops/s"), samples("limit", 1, "ops/s")
	rows := []row{against("s", fig, limit, atLeast(0.9, "≥ 0.90"))}
	fig.Samples, limit.Samples = []float64{950, 960, 970}, []float64{1000, 1000, 1000}
	rejudge(rows)
	if rows[0].Ratio != 0.96 || !rows[0].Goal.Met {
		t.Fatalf("ratio %v, met %v; want 0.96, met", rows[0].Ratio, rows[0].Goal.Met)
	}
	limit.Samples = []float64{2000, 2000, 2000}
	rejudge(rows)
	if rows[0].Ratio != 0.48 || rows[0].Goal.Met {
		t.Fatalf("ratio %v, met %v; want 0.48, not met", rows[0].Ratio, rows[0].Goal.Met)
	}
}
