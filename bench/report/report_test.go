package report

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/bench"
)

// sample is a result shaped like a real run: latency grows with size and the
// series differ by constant factors.
func sample() bench.Result {
	r := bench.Result{
		Name:    "transfers",
		Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Host:    map[string]string{"cpus": "2", "go": "go1.26"},
		Notes:   []string{"machine shared with other builds"},
	}
	base := map[string]time.Duration{"memcpy": 50 * time.Nanosecond, "tcp": 20 * time.Microsecond, "redis": 60 * time.Microsecond}
	gbps := map[string]float64{"memcpy": 20e9, "tcp": 4.7e9, "redis": 1.4e9}
	for _, size := range bench.DefaultSizes() {
		for _, s := range []string{"memcpy", "tcp", "redis"} {
			d := base[s] + time.Duration(float64(size)/gbps[s]*1e9)
			p := bench.Summarize(s, size, []time.Duration{d, d + d/10, d + d/5})
			r.Points = append(r.Points, p)
		}
	}
	return r
}

func TestJSONRoundTrip(t *testing.T) {
	r := sample()
	var b bytes.Buffer
	if err := WriteJSON(&b, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `"p50_ns"`) {
		t.Errorf("JSON lacks p50_ns:\n%s", b.String())
	}
	got, err := ReadJSON(&b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Errorf("round trip changed the result:\n got %+v\nwant %+v", got, r)
	}
}

func TestWriteMarkdown(t *testing.T) {
	var b strings.Builder
	if err := WriteMarkdown(&b, sample()); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"## transfers",
		"cpus 2, go go1.26",
		"| size | memcpy | tcp | redis |",
		"| 1 KiB | 111ns / 9225 | 22.2µs / 46.0 |",
		"| 1 GiB | ",
		"- machine shared with other builds",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if rows := strings.Count(md, "\n| "); rows != 2+len(bench.DefaultSizes()) {
		t.Errorf("%d table lines, want %d:\n%s", rows, 2+len(bench.DefaultSizes()), md)
	}
}

func TestWriteRatios(t *testing.T) {
	r := sample()
	r.Points = append(r.Points, bench.Point{Series: "x", Size: bench.KiB, N: 1, P50: 120 * time.Microsecond})
	var b strings.Builder
	if err := WriteRatios(&b, r, "redis", "x", "tcp"); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	// x at 1 KiB: 120µs against redis's median 1.1 × (60µs + 1KiB at 1.4 GB/s) ≈ 66.8µs.
	for _, want := range []string{"| size | x | tcp |", "| 1 KiB | 1.80× | 0.33× |", "| 1 GiB |  | "} {
		if !strings.Contains(md, want) {
			t.Errorf("ratios lack %q:\n%s", want, md)
		}
	}
	if err := WriteRatios(&b, r, "nope"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("unknown baseline: err = %v", err)
	}
}

func TestWritePNG(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latency.png")
	if dir := os.Getenv("HANDOFF_BENCH_PNG_DIR"); dir != "" {
		path = filepath.Join(dir, "sample.png") // to look at it
	}
	if err := WritePNG(path, sample(), "handoff bench: sample"); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 600 || b.Dy() < 400 {
		t.Errorf("image is %v, want at least 600×400", b)
	}
	if err := WritePNG(path, bench.Result{}, "empty"); err == nil {
		t.Error("plotting an empty result did not fail")
	}
}

func TestDurationTicks(t *testing.T) {
	var labels []string
	for _, tk := range durationTicks(3e-6, 2) {
		if tk.Label != "" {
			labels = append(labels, tk.Label)
		}
	}
	want := []string{"10µs", "100µs", "1ms", "10ms", "100ms", "1s"}
	if !reflect.DeepEqual(labels, want) {
		t.Errorf("labels %v, want %v", labels, want)
	}
	if got := shortSize(64 * bench.KiB); got != "64K" {
		t.Errorf("shortSize = %q", got)
	}
}
