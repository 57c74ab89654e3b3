package baseline

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/bench"
	"github.com/handoff-dev/handoff/bench/raw"
	"github.com/handoff-dev/handoff/bench/report"
)

// TestFullRun measures the raw limits and both baselines side by side and
// writes limits.{json,md,png} into $HANDOFF_BENCH_FULL. It is the command
// behind the figures in bench/BENCHMARKS.md:
//
//	HANDOFF_BENCH_FULL=/tmp/bench HANDOFF_BENCH_MAX=1073741824 \
//	  go test -run FullRun -timeout 30m -v ./bench/baseline
//
// HANDOFF_BENCH_MAX caps the payload size (default 256 MiB).
func TestFullRun(t *testing.T) {
	out := os.Getenv("HANDOFF_BENCH_FULL")
	if out == "" {
		t.Skip("set HANDOFF_BENCH_FULL=DIR to run the full measurement (minutes)")
	}
	maxSize := 256 * bench.MiB
	if s := os.Getenv("HANDOFF_BENCH_MAX"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		maxSize = v
	}
	var sizes []int64
	for _, s := range bench.DefaultSizes() {
		if s <= maxSize {
			sizes = append(sizes, s)
		}
	}
	ctx := context.Background()
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}

	ts, err := raw.Transfers()
	if err != nil {
		t.Fatal(err)
	}
	r, err := StartRedis(ctx, redisBin(t), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ts = append(ts, r.NewTransfer())
	shm, err := os.MkdirTemp("/dev/shm", "handoff-minio-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(shm)
	m, err := StartMinIO(ctx, minioBin(t), shm)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	mt, err := m.NewTransfer()
	if err != nil {
		t.Fatal(err)
	}
	ts = append(ts, mt)
	defer func() {
		for _, tr := range ts {
			tr.Close()
		}
	}()

	res, err := bench.RunTransfers(ctx, bench.Options{
		Name: "limits", Sizes: sizes, MinIters: 3, MaxIters: 1000, Budget: 2 * time.Second,
		Progress: logWriter{t},
	}, ts)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []func() (bench.Point, error){
		func() (bench.Point, error) { return raw.RoundTrip(ctx, "tcp", 64, 5000) },
		func() (bench.Point, error) { return raw.RoundTrip(ctx, "unix", 64, 5000) },
		func() (bench.Point, error) { return raw.HTTPEcho(ctx, 64, 5000) },
	} {
		p, err := f()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: p50 %s p99 %s", p.Series, bench.FormatDuration(p.P50), bench.FormatDuration(p.P99))
		res.Points = append(res.Points, p)
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		res.Notes = append(res.Notes, "load average at the end: "+string(b[:len(b)-1]))
	}

	write := func(name string, fn func(*os.File) error) {
		f, err := os.Create(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := fn(f); err != nil {
			t.Fatal(err)
		}
	}
	write("limits.json", func(f *os.File) error { return report.WriteJSON(f, res) })
	write("limits.md", func(f *os.File) error {
		if err := report.WriteMarkdown(f, res); err != nil {
			return err
		}
		f.WriteString("\n")
		return report.WriteRatios(f, res, "redis", "memcpy", "tcp", "unix", mt.Name())
	})
	if err := report.WritePNG(filepath.Join(out, "limits.png"), res, "raw limits and baselines, p50 latency"); err != nil {
		t.Fatal(err)
	}
}
