package report

import (
	"strings"
	"testing"
)

func TestWriteTableKeepsOnlyRowsWithPoints(t *testing.T) {
	r := sample()
	var b strings.Builder
	if err := WriteTable(&b, r, "tcp"); err != nil {
		t.Fatal(err)
	}
	got := b.String()
	if strings.Contains(got, "redis") || strings.Contains(got, "memcpy") {
		t.Errorf("table shows series it was not asked for:\n%s", got)
	}
	if n := strings.Count(got, "\n"); n != 2+len(r.Sizes()) {
		t.Errorf("table has %d lines, want a header, a rule and %d rows:\n%s", n, len(r.Sizes()), got)
	}

	b.Reset()
	if err := WriteTable(&b, r, "nosuch"); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(b.String(), "\n"); n != 2 {
		t.Errorf("a series without points still got rows:\n%s", b.String())
	}
}

func TestWriteBars(t *testing.T) {
	var b strings.Builder
	err := WriteBars(&b, []Bar{
		{Bar: "same node, 1 GiB: < 1 ms", Series: "handoff-ref-same", Measured: "0.4 ms", Worst: 0.4, Want: 1, Met: true},
		{Bar: "cross node: ≥ 0.8× tcp", Series: "handoff-ref-pull", Baseline: "tcp", Measured: "64 MiB 0.5×", Worst: 0.5, Want: 0.8},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := b.String()
	for _, want := range []string{"| same node, 1 GiB: < 1 ms | handoff-ref-same | — | 0.4 ms | met (worst 0.40, bar 1.00) |",
		"| cross node: ≥ 0.8× tcp | handoff-ref-pull | tcp | 64 MiB 0.5× | **not met** (worst 0.50, bar 0.80) |"} {
		if !strings.Contains(got, want) {
			t.Errorf("bars table lacks %q:\n%s", want, got)
		}
	}
}
