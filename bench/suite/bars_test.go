package suite

import (
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/bench"
)

// point is a series at size with every latency d.
func point(series string, size int64, d time.Duration) bench.Point {
	return bench.Summarize(series, size, []time.Duration{d, d, d})
}

func TestTransferBarsJudgesEachBarOnItsSizes(t *testing.T) {
	var r bench.Result
	for _, size := range bench.DefaultSizes() {
		mb := time.Duration(size / bench.MiB)
		r.Points = append(r.Points,
			point("memcpy", size, max(mb, 1)*70*time.Microsecond),
			point("tcp", size, max(mb, 1)*400*time.Microsecond),
			point("redis", size, max(mb, 1)*20*time.Millisecond),
			point("minio-shm", size, max(mb, 1)*10*time.Millisecond),
			point(seriesS3F2F, size, max(mb, 1)*12*time.Millisecond),
			// Cross node at 0.9× tcp above 16 MiB, 0.5× below.
			point(seriesRefPull, size, max(mb, 1)*400*time.Microsecond*10/9),
			point(seriesF2F, size, max(mb, 1)*800*time.Microsecond),
			point(seriesRefSame, size, 700*time.Microsecond),
			point(seriesRefNode+"-sharemap", size, 600*time.Microsecond),
			point(seriesRefNode, size, 3*time.Millisecond),
		)
	}
	r.Points = append(r.Points,
		point("scatter-ref", 8*64*bench.MiB, time.Second), point("scatter-s3", 8*64*bench.MiB, 20*time.Second),
		point("gather-ref", 8*64*bench.MiB, time.Second), point("gather-s3", 8*64*bench.MiB, 2*time.Second),
	)
	got := map[string]bool{}
	for _, b := range transferBars(r) {
		if strings.Contains(b.Bar, "quick run") {
			t.Errorf("bar %q says quick run, but every size was measured", b.Bar)
		}
		got[b.Bar+" / "+b.Series+" / "+b.Baseline] = b.Met
	}
	want := map[string]bool{
		"same node, 1 GiB hand-over with the invocation carrying the reference: p50 < 1 ms / handoff-ref-same / memcpy": true,
		"same node, 1 GiB hand-over (Share + Map): p50 < 1 ms / handoff-ref-node-sharemap / memcpy":                     true,
		"same node, 1 GiB hand-over with the invocation carrying the reference: p50 < 1 ms / handoff-ref-node / memcpy": false,
		"cross node, 64 MiB-1 GiB: throughput ≥ 0.8× tcp / handoff-ref-pull / tcp":                                      true,
		"cross node, 64 MiB-1 GiB: throughput ≥ 0.8× tcp / handoff-f2f / tcp":                                           false,
		"1 MiB: latency ≤ 1/20 of MinIO's / handoff-ref-pull / minio-shm":                                               true,
		"1 MiB: latency ≤ 1/20 of MinIO's / handoff-f2f / minio-f2f":                                                    false,
		"64 MiB and above: throughput ≥ 10× MinIO's / handoff-ref-pull / minio-shm":                                     true,
		"1 MiB and above: latency ≤ 1/3 of Redis's / handoff-f2f / redis":                                               true,
		"8-way scatter against S3: throughput ≥ 10× (the MinIO throughput bar) / scatter-ref / scatter-s3":              true,
		"8-way gather against S3: throughput ≥ 10× (the MinIO throughput bar) / gather-ref / gather-s3":                 false,
	}
	for k, met := range want {
		m, ok := got[k]
		if !ok {
			t.Errorf("no bar %q; have %v", k, got)
			continue
		}
		if m != met {
			t.Errorf("bar %q: met = %v, want %v", k, m, met)
		}
	}
	if _, ok := got["8-way broadcast against S3: throughput ≥ 10× (the MinIO throughput bar) / broadcast-ref / broadcast-s3"]; ok {
		t.Error("a bar was judged on a pattern that was not measured")
	}
}

func TestTransferBarsSaysWhenARunIsQuick(t *testing.T) {
	var r bench.Result
	for _, size := range []int64{bench.KiB, bench.MiB} {
		r.Points = append(r.Points, point("tcp", size, time.Millisecond), point(seriesRefPull, size, 2*time.Millisecond))
	}
	bars := transferBars(r)
	if len(bars) != 1 {
		t.Fatalf("got %d bars, want the one with both series: %+v", len(bars), bars)
	}
	if b := bars[0]; !strings.Contains(b.Bar, "quick run: at 1 MiB only") || b.Met || b.Worst != 0.5 {
		t.Errorf("bar %+v; want it judged at 1 MiB only, 0.5×, not met", b)
	}
}
