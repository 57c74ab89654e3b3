package suite

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/handoff-dev/handoff/api"
	"github.com/handoff-dev/handoff/bench"
	"github.com/handoff-dev/handoff/internal/platform"
)

// fnSeries is a series measured inside the functions of internal/benchfn:
// the harness invokes fn with a command, and the producer times the
// hand-over itself and answers with an fnAnswer.
type fnSeries struct {
	// name is the series of the hand-over time; the round trip, the
	// Share alone, the consumer's Map alone and the page touching, when
	// reported, are name+"-rt", name+"-share", name+"-map" and
	// name+"-touch"; name+"-sharemap" is Share and Map of each call added
	// up: the hand-over itself, without the invocation that carries the
	// reference.
	name string
	// c is the platform of fn.
	c   *api.Client
	fn  string
	cmd func(size int64) string
	// items is how many payloads of the size one call hands over (a
	// pattern); its points are at items × size. 0 means 1.
	items int64
	// minIters overrides Options.MinIters when larger.
	minIters int
}

// fnAnswer is benchfn's answer (its type answer), in nanoseconds.
type fnAnswer struct {
	Handover  int64 `json:"handover_ns"`
	RoundTrip int64 `json:"rt_ns"`
	Share     int64 `json:"share_ns"`
	Map       int64 `json:"map_ns"`
	Touch     int64 `json:"touch_ns"`
}

// fnState is the measuring state of one fnSeries at one size.
type fnState struct {
	s                        fnSeries
	hand, rt, share, mp, tch []time.Duration
	sm                       []time.Duration // share + map of the same call
	spent                    time.Duration   // wall time, untimed preparation included
	done                     bool
}

// runFunctions measures each series at each size, interleaved round by
// round as bench.RunTransfers does. A series is finished at a size after
// MaxIters calls, or after MinIters calls once it has spent Budget of
// wall time: the preparation a call does before its clock starts (filling
// a 1 GiB buffer) counts against the budget, or the largest sizes would
// run for minutes.
func runFunctions(ctx context.Context, opts bench.Options, sizes []int64, ss []fnSeries, log io.Writer) ([]bench.Point, error) {
	var points []bench.Point
	for _, size := range sizes {
		st := make([]*fnState, len(ss))
		for i, s := range ss {
			st[i] = &fnState{s: s}
			if _, err := callFn(ctx, s, size); err != nil { // warm-up
				return points, err
			}
		}
		for left := len(st); left > 0; {
			for _, x := range st {
				if x.done {
					continue
				}
				start := time.Now()
				a, err := callFn(ctx, x.s, size)
				if err != nil {
					return points, err
				}
				x.spent += time.Since(start)
				x.hand = append(x.hand, time.Duration(a.Handover))
				x.rt = append(x.rt, time.Duration(a.RoundTrip))
				if a.Share > 0 {
					x.share = append(x.share, time.Duration(a.Share))
				}
				if a.Map > 0 {
					x.mp = append(x.mp, time.Duration(a.Map))
				}
				if a.Touch > 0 {
					x.tch = append(x.tch, time.Duration(a.Touch))
				}
				if a.Share > 0 && a.Map > 0 {
					x.sm = append(x.sm, time.Duration(a.Share+a.Map))
				}
				n := len(x.hand)
				if n >= opts.MaxIters || (n >= max(opts.MinIters, x.s.minIters) && x.spent >= opts.Budget) {
					x.done = true
					left--
				}
			}
		}
		for _, x := range st {
			at := size * max(x.s.items, 1)
			p := bench.Summarize(x.s.name, at, x.hand)
			points = append(points, p, bench.Summarize(x.s.name+"-rt", at, x.rt))
			if len(x.share) > 0 {
				points = append(points, bench.Summarize(x.s.name+"-share", at, x.share))
			}
			if len(x.mp) > 0 {
				points = append(points, bench.Summarize(x.s.name+"-map", at, x.mp))
			}
			if len(x.tch) > 0 {
				points = append(points, bench.Summarize(x.s.name+"-touch", at, x.tch))
			}
			if len(x.sm) > 0 {
				points = append(points, bench.Summarize(x.s.name+"-sharemap", at, x.sm))
			}
			if log != nil {
				fmt.Fprintf(log, "%-8s %-18s n=%-5d p50=%-10s p99=%-10s %s\n", bench.FormatSize(at), p.Series, p.N,
					bench.FormatDuration(p.P50), bench.FormatDuration(p.P99), bench.FormatThroughput(p.Throughput))
			}
		}
	}
	return points, nil
}

// callFn runs one call of s at size and checks that its figures make
// sense.
func callFn(ctx context.Context, s fnSeries, size int64) (fnAnswer, error) {
	out, err := s.c.Invoke(ctx, s.fn, []byte(s.cmd(size)))
	if err != nil {
		return fnAnswer{}, fmt.Errorf("%s at %s: %w", s.name, bench.FormatSize(size), err)
	}
	var a fnAnswer
	if err := json.Unmarshal(out, &a); err != nil {
		return fnAnswer{}, fmt.Errorf("%s at %s: %s answered %.200q, not its timings", s.name, bench.FormatSize(size), s.fn, out)
	}
	if a.Handover <= 0 || a.RoundTrip <= 0 {
		return fnAnswer{}, fmt.Errorf("%s at %s: %s reported a hand-over of %dns and a round trip of %dns; both must be positive",
			s.name, bench.FormatSize(size), s.fn, a.Handover, a.RoundTrip)
	}
	return a, nil
}

// startOneNode runs a second platform with a single node agent, on which
// two functions are on one node by construction. stop may be called more
// than once.
func (e Env) startOneNode(ctx context.Context) (*platform.Platform, func(), error) {
	dir, err := os.MkdirTemp("", "handoff-bench-1node-")
	if err != nil {
		return nil, nil, err
	}
	p, err := platform.Start(ctx, platform.Options{Binary: e.Binary, Dir: dir, Nodes: 1})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	fmt.Fprintf(e.Log, "second platform up at %s (1 node agent)\n", p.URL)
	var once sync.Once // Platform.Stop waits for an exit it sees only once
	return p, func() { once.Do(func() { p.Stop(); os.RemoveAll(dir) }) }, nil
}

// placement waits until every function in fns has a ready instance and
// returns the node agent each runs on.
func placement(ctx context.Context, c *api.Client, fns ...string) (map[string]string, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := c.Status(ctx)
		if err != nil {
			return nil, err
		}
		at := map[string]string{}
		for _, n := range st.Nodes {
			for _, in := range n.Instances {
				if in.State == "ready" {
					at[in.Function] = n.ID
				}
			}
		}
		missing := ""
		for _, fn := range fns {
			if at[fn] == "" {
				missing = fn
			}
		}
		if missing == "" {
			return at, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no ready instance of %s within 30s", missing)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// crossNode checks that producer and consumer run on different node
// agents, which the cross-node series rely on.
func crossNode(ctx context.Context, c *api.Client, producer, consumer string) (string, error) {
	at, err := placement(ctx, c, producer, consumer)
	if err != nil {
		return "", err
	}
	if at[producer] == at[consumer] {
		return "", errors.New("bench: " + producer + " and " + consumer + " both run on node agent " + at[producer] +
			"; the cross-node series need them on two: the scheduler no longer spreads them")
	}
	return fmt.Sprintf("%s on %s, %s on %s", producer, at[producer], consumer, at[consumer]), nil
}

// subset is the part of `handoff bench transfer` a run measures, taken
// from the environment so that one series can be iterated on without the
// whole 16-minute run:
//
//	HANDOFF_BENCH_SIZES=64MiB,256MiB,1GiB   payload sizes (B, KiB, MiB, GiB)
//	HANDOFF_BENCH_SERIES=tcp,handoff-ref-pull   series to measure, baselines
//	                                        included (memcpy, tcp, unix,
//	                                        redis, minio-shm, handoff-gw,
//	                                        the handoff-* and minio-f2f
//	                                        series, scatter-ref, gather-s3...)
//	HANDOFF_BENCH_MIN_ITERS=10              samples per series and size, at least
//
// Unset, everything is measured at the default sizes.
type subset struct {
	sizes    []int64  // nil: the run's default
	series   []string // nil: all
	minIters int
}

func subsetFromEnv() (subset, error) {
	var sub subset
	if v := os.Getenv("HANDOFF_BENCH_SIZES"); v != "" {
		for _, f := range strings.Split(v, ",") {
			n, err := parseSize(strings.TrimSpace(f))
			if err != nil {
				return subset{}, fmt.Errorf("HANDOFF_BENCH_SIZES: %w", err)
			}
			sub.sizes = append(sub.sizes, n)
		}
	}
	if v := os.Getenv("HANDOFF_BENCH_SERIES"); v != "" {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				sub.series = append(sub.series, f)
			}
		}
	}
	if v := os.Getenv("HANDOFF_BENCH_MIN_ITERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return subset{}, fmt.Errorf("HANDOFF_BENCH_MIN_ITERS=%q: give a whole number of at least 1", v)
		}
		sub.minIters = n
	}
	return sub, nil
}

// wants reports whether series is measured.
func (s subset) wants(series string) bool {
	return s.series == nil || slices.Contains(s.series, series)
}

// wantsS3 reports whether any measured series needs MinIO.
func (s subset) wantsS3() bool {
	if s.series == nil {
		return true
	}
	for _, name := range s.series {
		if name == "minio-shm" || name == seriesS3F2F || strings.HasSuffix(name, "-s3") {
			return true
		}
	}
	return false
}

// parseSize reads "64MiB", "1GiB", "512KiB" or a plain byte count.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		v      int64
	}{{"GiB", bench.GiB}, {"MiB", bench.MiB}, {"KiB", bench.KiB}, {"B", 1}} {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(rest), u.v
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("size %q: give a positive count with an optional KiB, MiB or GiB", s)
	}
	return n * mult, nil
}
