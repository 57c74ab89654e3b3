package bench

import (
	"bytes"
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

// copyTransfer copies the payload and logs the order of calls.
type copyTransfer struct {
	name  string
	log   *[]string
	calls int
	// corruptAt, when > 0, flips a byte on that call (1-based).
	corruptAt int
	alias     bool
	short     bool
	closed    bool
	cleanups  int
}

func (c *copyTransfer) Name() string { return c.name }
func (c *copyTransfer) Close() error { c.closed = true; return nil }
func (c *copyTransfer) Cleanup(ctx context.Context) error {
	c.cleanups++
	return nil
}
func (c *copyTransfer) Transfer(ctx context.Context, p []byte) ([]byte, error) {
	c.calls++
	if c.log != nil {
		*c.log = append(*c.log, c.name)
	}
	if c.alias {
		return p, nil
	}
	out := bytes.Clone(p)
	if c.short {
		out = out[:len(out)-1]
	}
	if c.corruptAt == c.calls {
		out[len(out)/2] ^= 1
	}
	return out, nil
}

func TestRunTransfersInterleavesAndCounts(t *testing.T) {
	var log []string
	a := &copyTransfer{name: "a", log: &log}
	b := &copyTransfer{name: "b", log: &log}
	var progress strings.Builder
	res, err := RunTransfers(context.Background(), Options{
		Sizes:    []int64{KiB, 64 * KiB},
		MinIters: 2,
		MaxIters: 5,
		Budget:   time.Hour,
		Progress: &progress,
	}, []Transfer{a, b})
	if err != nil {
		t.Fatal(err)
	}
	// Per size: one warm-up each, then 5 rounds alternating a, b.
	want := strings.Repeat("ab", 6)
	if got := strings.Join(log, ""); got != want+want {
		t.Errorf("call order %q, want %q", got, want+want)
	}
	if len(res.Points) != 4 {
		t.Fatalf("got %d points, want 4", len(res.Points))
	}
	for _, p := range res.Points {
		if p.N != 5 {
			t.Errorf("%s at %d: N=%d, want 5 (MaxIters)", p.Series, p.Size, p.N)
		}
		if p.P50 <= 0 || p.P99 < p.P50 || p.Throughput <= 0 {
			t.Errorf("implausible point %+v", p)
		}
	}
	if lines := strings.Count(progress.String(), "\n"); lines != 4 {
		t.Errorf("progress has %d lines, want 4:\n%s", lines, progress.String())
	}
	if res.Host["cpus"] == "" || res.Host["go"] == "" {
		t.Errorf("host info missing: %v", res.Host)
	}
	if a.cleanups != a.calls {
		t.Errorf("%d cleanups after %d calls", a.cleanups, a.calls)
	}
	if a.closed {
		t.Error("RunTransfers closed a transfer it does not own")
	}
}

func TestRunTransfersBudgetStopsAfterMinIters(t *testing.T) {
	slow := &sleepTransfer{d: 5 * time.Millisecond}
	res, err := RunTransfers(context.Background(), Options{
		Sizes: []int64{KiB}, MinIters: 3, MaxIters: 1000, Budget: time.Millisecond,
	}, []Transfer{slow})
	if err != nil {
		t.Fatal(err)
	}
	if n := res.Points[0].N; n != 3 {
		t.Errorf("N=%d, want MinIters=3 once the budget is spent", n)
	}
}

type sleepTransfer struct{ d time.Duration }

func (s *sleepTransfer) Name() string { return "sleep" }
func (s *sleepTransfer) Close() error { return nil }
func (s *sleepTransfer) Transfer(ctx context.Context, p []byte) ([]byte, error) {
	time.Sleep(s.d)
	return bytes.Clone(p), nil
}

func TestRunTransfersDetectsBadBytes(t *testing.T) {
	for _, tc := range []struct {
		name string
		t    *copyTransfer
		want string
	}{
		{"corrupt", &copyTransfer{name: "flaky", corruptAt: 3}, "checksum"},
		{"short", &copyTransfer{name: "flaky", short: true}, "got 1023 bytes"},
		{"alias", &copyTransfer{name: "flaky", alias: true}, "payload slice itself"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := RunTransfers(context.Background(), Options{
				Sizes: []int64{KiB}, MinIters: 5, MaxIters: 5,
			}, []Transfer{tc.t})
			if !errors.Is(err, ErrMismatch) {
				t.Fatalf("err = %v, want ErrMismatch", err)
			}
			for _, s := range []string{"flaky", "1 KiB", tc.want} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

func TestRunTransfersStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := RunTransfers(ctx, Options{Sizes: []int64{KiB}}, []Transfer{&copyTransfer{name: "a"}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestPercentile(t *testing.T) {
	var lat []time.Duration
	for i := 100; i >= 1; i-- {
		lat = append(lat, time.Duration(i))
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{0, 1}, {50, 50}, {99, 99}, {100, 100}, {1, 1}, {99.5, 100}} {
		if got := Percentile(lat, tc.p); got != tc.want {
			t.Errorf("Percentile(%v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if lat[0] != 100 {
		t.Error("Percentile sorted its input in place")
	}
	if Percentile(nil, 50) != 0 {
		t.Error("Percentile of nothing is not 0")
	}
	if got := Percentile([]time.Duration{7}, 99); got != 7 {
		t.Errorf("single sample p99 = %v", got)
	}
}

func TestSummarizeAndRatio(t *testing.T) {
	p := Summarize("x", MiB, []time.Duration{time.Millisecond, 3 * time.Millisecond, 2 * time.Millisecond})
	if p.P50 != 2*time.Millisecond || p.Mean != 2*time.Millisecond || p.N != 3 {
		t.Errorf("Summarize = %+v", p)
	}
	if want := float64(MiB) / 0.002; math.Abs(p.Throughput-want) > 1 {
		t.Errorf("throughput %v, want %v", p.Throughput, want)
	}
	base := Point{P50: 4 * time.Millisecond}
	if r := Ratio(p, base); r != 0.5 {
		t.Errorf("Ratio = %v, want 0.5", r)
	}
	if s := Speedup(p, base); s != 2 {
		t.Errorf("Speedup = %v, want 2", s)
	}
	if !math.IsNaN(Ratio(p, Point{})) {
		t.Error("Ratio against an empty baseline is not NaN")
	}
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{FormatSize(KiB), "1 KiB"},
		{FormatSize(64 * KiB), "64 KiB"},
		{FormatSize(GiB), "1 GiB"},
		{FormatSize(100), "100 B"},
		{FormatSize(3 * MiB / 2), "1.5 MiB"},
		{FormatDuration(62100 * time.Nanosecond), "62.1µs"},
		{FormatDuration(1050 * time.Microsecond), "1.05ms"},
		{FormatDuration(2500 * time.Millisecond), "2.50s"},
		{FormatDuration(180 * time.Nanosecond), "180ns"},
		{FormatThroughput(4.71e9), "4.71 GB/s"},
		{FormatThroughput(16.5e6), "16.5 MB/s"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestResultHelpers(t *testing.T) {
	r := Result{Points: []Point{{Series: "b", Size: MiB}, {Series: "a", Size: KiB}, {Series: "b", Size: KiB}}}
	if got := strings.Join(r.Series(), ","); got != "b,a" {
		t.Errorf("Series = %s", got)
	}
	if got := r.Sizes(); len(got) != 2 || got[0] != KiB || got[1] != MiB {
		t.Errorf("Sizes = %v", got)
	}
	if _, ok := r.Lookup("a", KiB); !ok {
		t.Error("Lookup missed a point")
	}
	if _, ok := r.Lookup("a", MiB); ok {
		t.Error("Lookup found a missing point")
	}
}
