package suite

import (
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/bench"
)

func TestDirectBarsJudgeOnTheRunsBaselines(t *testing.T) {
	us := time.Microsecond
	r := InvokeResult{
		Gateway: bench.Point{N: 100, P50: 300 * us, P99: 900 * us},
		Leases: DirectResult{
			Depth:       64,
			RawRing:     bench.Point{N: 100, P50: 1 * us, P99: 4 * us},
			RawRingRate: Rate{Calls: 1_000_000, Elapsed: time.Second, CPU: 2 * time.Second},
			RawTCP:      bench.Point{N: 100, P50: 20 * us},
			RawTCP2Proc: bench.Point{N: 100, P50: 25 * us},
			Leases: []LeaseSeries{
				{Series: "lease-hot", Latency: bench.Point{N: 100, P50: 4 * us, P99: 30 * us},
					Pipelined: Rate{Calls: 500_000, Elapsed: time.Second, CPU: 2 * time.Second}},
				{Series: "lease-tcp", Latency: bench.Point{N: 100, P50: 30 * us, P99: 90 * us}},
			},
		},
	}
	want := map[string]bool{ // bar and baseline: met
		"same node, hot, 64 B: p50 ≤ 5 µs/raw-ring":                                  true,
		"same node, hot, 64 B: p99 ≤ 20 µs/raw-ring":                                 false,
		"across nodes (TCP), 64 B: p50 ≤ 1.3× the raw TCP round trip/raw-tcp":        false, // 1.5×
		"across nodes (TCP), 64 B: p50 ≤ 1.3× the raw TCP round trip/raw-tcp-2proc":  true,  // 1.2×
		"p50 ≥ 20× lower than through the gateway (same function)/gateway lease-hot": true,  // 75×
		"p50 ≥ 20× lower than through the gateway (same function)/gateway lease-tcp": false, // 10×
		"same node, pipelined (64 in flight): ≥ 200,000 calls/s per core/raw-ring":   true,  // 250,000
	}
	bars := directBars(r)
	if len(bars) != len(want) {
		t.Fatalf("%d bars, want %d: %+v", len(bars), len(want), bars)
	}
	for _, b := range bars {
		key := b.Bar + "/" + b.Baseline
		if b.Baseline == "gateway" {
			key += " " + b.Series
		}
		met, ok := want[key]
		if !ok {
			t.Errorf("unexpected bar %q", key)
			continue
		}
		if b.Met != met {
			t.Errorf("%s: met = %v (worst %v), want %v; measured %s", key, b.Met, b.Worst, met, b.Measured)
		}
	}
	var md strings.Builder
	if err := writeDirect(&md, r); err != nil {
		t.Fatal(err)
	}
	// The leases table comes first; every row has the header's cells.
	table, _, _ := strings.Cut(strings.TrimSpace(md.String()), "\n\n")
	rows := strings.Split(table, "\n")
	for _, row := range rows {
		if strings.Count(row, "|") != strings.Count(rows[0], "|") {
			t.Errorf("row with %d cells, header %d: %s", strings.Count(row, "|")-1, strings.Count(rows[0], "|")-1, row)
		}
	}
	if len(rows) != 2+1+2+3 {
		t.Errorf("leases table has %d rows:\n%s", len(rows), table)
	}
}
